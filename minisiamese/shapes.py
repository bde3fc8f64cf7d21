"""Shape arithmetic and the checks that turn bad shapes into clear ValueErrors."""
from .errors import require_int


def conv_output_size(size, kernel, stride, pad):
    """floor((size + 2*pad - kernel) / stride) + 1, the 'valid' output length."""
    return (size + 2 * pad - kernel) // stride + 1


def check_conv_args(x_shape, w_shape, b_shape, stride, pad):
    """Validate a channels-last conv and return (OH, OW)."""
    if len(x_shape) != 4:
        raise ValueError(f"conv2d: x must be (N, H, W, C), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"conv2d: w must be (F, C, KH, KW), got shape {tuple(w_shape)}")
    N, H, W, C = x_shape
    F, Cw, KH, KW = w_shape
    if Cw != C:
        raise ValueError(f"conv2d: x has {C} channels (shape {tuple(x_shape)}) but w expects {Cw} "
                         f"(shape {tuple(w_shape)})")
    if b_shape is not None and tuple(b_shape) != (F,):
        raise ValueError(f"conv2d: b must have shape ({F},), got {tuple(b_shape)}")
    require_int("conv2d: stride", stride, 1, error=ValueError)
    require_int("conv2d: pad", pad, 0, error=ValueError)
    if min(N, H, W, C, F, KH, KW) < 1:
        raise ValueError(f"conv2d: empty dimension in x {tuple(x_shape)} or w {tuple(w_shape)}")
    if KH > H + 2 * pad or KW > W + 2 * pad:
        raise ValueError(f"conv2d: kernel {KH}x{KW} larger than padded input "
                         f"{H + 2 * pad}x{W + 2 * pad} (x {tuple(x_shape)}, pad {pad})")
    return conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)


def check_pool_args(x_shape, pool, stride):
    if len(x_shape) != 4:
        raise ValueError(f"maxpool2d: x must be (N, H, W, C), got shape {tuple(x_shape)}")
    require_int("maxpool2d: pool", pool, 1, error=ValueError)
    require_int("maxpool2d: stride", stride, 1, error=ValueError)
    N, H, W, C = x_shape
    if min(N, H, W, C) < 1 or pool > H or pool > W:
        raise ValueError(f"maxpool2d: window {pool}x{pool} does not fit input {tuple(x_shape)}")
    return (H - pool) // stride + 1, (W - pool) // stride + 1
