"""minisiamese command line: train, evaluate, experiments, verify, identify, pack, download.

    minisiamese train                      # the baseline on ../shared/data/lfw-a (or $MINISIAMESE_DATA)
    minisiamese train --preset narrow --device gpu
    minisiamese evaluate --checkpoint runs/baseline/model.npz
    minisiamese experiments --only baseline narrow
    minisiamese verify a.jpg b.jpg --checkpoint runs/baseline/model.npz
    minisiamese identify q.jpg --gallery people/ --checkpoint runs/baseline/model.npz
    minisiamese download --data-dir ~/data/lfw-a

The same program runs as ``minisiamese``, ``python -m minisiamese`` and, in a
checkout, ``python cli.py``.  Relative default paths (the data folder, runs/,
docs/results.md) are taken from the current folder; each command's --help
shows what they resolve to.

Errors (missing data, a bad pairs file or config, a damaged checkpoint) print
one line naming the file, line or value and exit with status 2; --debug shows
the traceback instead.
"""
import argparse
import os
import signal
import sys
import threading

from minisiamese.errors import MAX_SEED, ConfigError, require_int, require_number
from minisiamese.fileio import CACHE_ENV, cache_root

DATASETS = ("lfw-a", "omniglot")       # runconfig.DATASETS, without importing the library for --help
PACK_SIZES = (20, 1000)   # data.MIN_FACE_SIDE; a 1000x1000 face is already 1 MB (13 GB for LFW's 13,233)
PACK_PAIRS, PACK_FACE = ("pairsDevTrain.txt", "pairsDevTest.txt"), (105, 1.0)     # pack's LFW-a defaults


def _here(path):
    """A default path as --help shows it: relative ones with where they resolve from this folder."""
    return path if os.path.isabs(path) else f"{path}, here {os.path.abspath(path)}"


def _cache_help(what):
    """--cache-dir's help: what is cached there, and the default as it resolves now."""
    return (f"where {what} are cached, keyed by content, with convplan.json (the conv layers' timings) "
            f"(default: ${CACHE_ENV} when set, else ~/.cache/minisiamese; now {cache_root()})")


def _common(p, config=True, dataset=False):
    from minisiamese.data import DATA_DIR_ENV, default_data_dir
    p.add_argument("--device", choices=["cpu", "gpu", "auto"], default="auto",
                   help="cpu (NumPy) or gpu (CuPy); auto = gpu when CuPy sees a CUDA device, else cpu")
    from minisiamese.omniglot import DEFAULT_DATA_DIR as OMNIGLOT_DIR
    p.add_argument("--data-dir", help=f"LFW-a folder holding lfw2/ and the pairs files (default: ${DATA_DIR_ENV} "
                                      f"or {_here(default_data_dir())}), or for Omniglot the folder holding "
                                      f"images_background/, images_evaluation/ and one-shot-runs/ (default: "
                                      f"{_here(OMNIGLOT_DIR)})")
    p.add_argument("--cache-dir", default=cache_root(), help=_cache_help("preprocessed images"))
    p.add_argument("--seed", help="seed for initialisation, split, shuffling, augmentation and "
                                               f"one-shot tasks, an integer in [0, {MAX_SEED}] (default: 0)")
    p.add_argument("--batch-size", type=int, help="pairs per batch (default: the config's, 128)")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if dataset:
        p.add_argument("--dataset", choices=DATASETS,
                       help="lfw-a (faces) or omniglot (Koch's own experiment: one-shot on Lake's runs); default: "
                            "the preset's or config's (train), the model's (evaluate), else lfw-a")
    if config:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--preset", help="a named experiment: baseline (default), normalize, augment, "
                                        "augment_normalize, dropout, narrow (the seed's six); best (the preset "
                                        "that beats them), best_no_crop, best_listed, best_koch (its "
                                        "ablation); bn512 (batch norm, a 512-d code, a richer head, flip "
                                        "averaging: the first model beyond Koch's net); bn512w (bn512 stopped "
                                        "on the mean validation AUC of 3 epochs: the strongest preset); for "
                                        "Omniglot omniglot-koch (Koch's net and protocol at 105x105, the default "
                                        "with --dataset omniglot), omniglot-small (28x28, for the CPU) and "
                                        "omniglot-36 (the same at 36x36, not better over three seeds)")
        g.add_argument("--config", help="an experiment config JSON file (see docs/configs/)")
        p.add_argument("--epochs", type=int, help="maximum epochs (default: the config's, 25)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change one setting of the preset or config, e.g. --set model.crop=0.6 "
                            "--set train.pairs=listed --set normalize=true (VALUE is JSON, or else a string); "
                            "repeatable")
        p.add_argument("--max-pairs", type=int,
                       help="use a stratified subset of this many pairs of each pairs file (quick runs)")


class _Parser(argparse.ArgumentParser):
    """argparse's parser (and, through add_subparsers, its subcommands') with
    its error line clipped like every other: a value pasted by mistake can be huge."""

    def error(self, message):
        super().error(_clipped(message))


def build_parser():
    p = _Parser(prog="minisiamese", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train on pairsDevTrain, then evaluate on pairsDevTest",
                       description="Train a Siamese net with the seed protocol (80/20 split, Adam, early "
                                   "stopping), checkpointing every epoch; then evaluate on the test pairs "
                                   "and write results.json and figures under --out.")
    _common(t, dataset=True)
    t.add_argument("--out", help=f"run folder (default: {_here(os.path.join('runs', '<preset>'))})")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz")
    again.add_argument("--overwrite", action="store_true",
                       help="start over in an --out that holds a run, finished or stopped, replacing its model, "
                            "checkpoint and results (without it, or --resume, such a folder is refused)")
    t.add_argument("--validation-only", action="store_true",
                   help="stop after training and report the validation figures only, never reading the test "
                        "pairs (for choosing a configuration honestly); runs in runs/sel/NAME are listed by "
                        "'experiments' in the selection table")

    e = sub.add_parser("evaluate", help="evaluate a trained model on a pairs file",
                       description="Accuracy, precision, recall, ROC AUC and one-shot accuracy on a pairs "
                                   "file in the LFW format; View 2 pairs.txt is evaluated with its 10 folds.")
    _common(e, config=False, dataset=True)
    e.add_argument("--checkpoint", default=os.path.join("runs", "baseline", "model.npz"),
                   help=f"model.npz written by train (default: {_here(os.path.join('runs', 'baseline', 'model.npz'))})")
    which = e.add_mutually_exclusive_group()
    which.add_argument("--pairs",
                       help="pairs file, a path or a name inside --data-dir (default: pairsDevTest.txt)")
    which.add_argument("--validation", action="store_true",
                       help="instead, the validation pairs of the run that wrote --checkpoint (its split of the "
                            "training pairs, rebuilt from the results.json or checkpoint.npz beside it, with the "
                            "run's own seed: --seed is not used); no one-shot tasks, and the test pairs are not read")
    e.add_argument("--flip-average", choices=["on", "off"],
                   help="override the model's test-time flip averaging (default: the model's own setting)")
    e.add_argument("--out", help="write results.json and figures here")
    e.add_argument("--n-way", type=int, default=10, help="candidates per one-shot task (default: 10; LFW-a only: "
                                                         "Omniglot's trials are Lake's 20-way runs and 20-way "
                                                         "within-alphabet trials)")

    x = sub.add_parser("experiments", help="run the seed's experiments and write docs/results.md",
                       description="Train and evaluate the named experiments (all six by default). Finished "
                                   "ones are skipped on rerun, interrupted ones resume, so the table can be "
                                   "completed over several runs and machines. Each finished experiment's "
                                   "results (no weights) are kept in results/NAME.json beside --results, and "
                                   "the table is built from those, with results/discussion.md under it.")
    _common(x, config=False)
    x.add_argument("--only", nargs="+", metavar="NAME",
                   help="experiments to run (default: the seed's six); the best preset's ablation rows are best, "
                        "best_no_crop, best_listed, best_koch; the Omniglot presets omniglot-small, omniglot-36 "
                        "and omniglot-koch run with --seeds only, in their own section of the table")
    x.add_argument("--out", default="runs", help=f"root of the run folders (default: {_here('runs')})")
    x.add_argument("--results", default=os.path.join("docs", "results.md"),
                   help=f"results table to write (default: {_here(os.path.join('docs', 'results.md'))})")
    x.add_argument("--force", action="store_true", help="rerun experiments that already finished")
    x.add_argument("--seeds", nargs="+", metavar="SEED",
                   help="train each named experiment once per seed, in OUT/seeds/NAME-sSEED (kept in "
                        "docs/results/seeds/); the table gains mean ± SD over seeds and paired comparisons")
    x.add_argument("--epochs", type=int, help="override every experiment's maximum epochs")
    x.add_argument("--max-pairs", type=int, help="stratified subset of every pairs file (quick runs)")

    v = sub.add_parser("verify", help="probability that two face images show the same person",
                       description="Any image Pillow reads; it is converted to grayscale and resized to "
                                   "the model's input size.")
    v.add_argument("image1")
    v.add_argument("image2")
    v.add_argument("--checkpoint", help="model.npz written by train (default: the model that ships with "
                                        "minisiamese, bn512w seed 0, calibrated: minisiamese/pretrained/MODEL_CARD.md)")
    v.add_argument("--device", choices=["cpu", "gpu", "auto"], default="auto")
    v.add_argument("--debug", action="store_true")

    i = sub.add_parser("identify", help="who, of a gallery of people, is in each query image",
                       description="One-shot identification: every query is compared with every gallery "
                                   "image and the top people are printed with their probabilities, or "
                                   "'unknown' when even the best is below the threshold. The gallery is a "
                                   "folder with one subfolder of images per person (LFW's layout), or one "
                                   "image per person named after them. Gallery embeddings are cached per "
                                   "checkpoint and image content under --cache-dir.")
    i.add_argument("queries", nargs="+", metavar="QUERY", help="query image(s)")
    i.add_argument("--gallery", required=True, help="gallery folder")
    i.add_argument("--checkpoint", help="model.npz written by train (default: the model that ships with "
                                        "minisiamese, bn512w seed 0, calibrated: minisiamese/pretrained/MODEL_CARD.md)")
    i.add_argument("--top", type=int, default=5, help="people to list per query (default: %(default)s)")
    i.add_argument("--threshold", type=float,
                   help="answer 'unknown' below this probability (default: 0.5 for a calibrated model, else the "
                        "threshold the model's training chose on validation)")
    i.add_argument("--figure", help="write a PNG of each query beside its top people")
    i.add_argument("--device", choices=["cpu", "gpu", "auto"], default="auto")
    i.add_argument("--cache-dir", default=cache_root(), help=_cache_help("gallery embeddings"))
    i.add_argument("--debug", action="store_true")

    k = sub.add_parser("pack", help="write a data set as one small .npz for another machine",
                       description="For machines that cannot hold the image files (a GPU box reached by copying "
                                   "a folder, say); use OUT as --data-dir there. LFW-a: writes "
                                   "OUT/faces-<size>[-crop<c>].npz (uint8 faces, about 11 KB each) and copies of "
                                   "the pairs files. --dataset omniglot: writes OUT/omniglot-packed.npz, every "
                                   "image the protocol reads (the background and evaluation sets, Lake's runs) "
                                   "at 105x105, 1 bit a pixel, compressed; train and evaluate with --dataset "
                                   "omniglot --data-dir OUT at any input size.")
    k.add_argument("--dataset", choices=DATASETS, default=DATASETS[0], help="what to pack (default: %(default)s)")
    k.add_argument("--data-dir", default=None, help="the data set's folder (default: as for train)")
    k.add_argument("--out", required=True, help="folder to write")
    k.add_argument("--pairs", nargs="+", help=f"LFW-a: pairs files whose faces to pack (default: "
                                              f"{' '.join(PACK_PAIRS)})")
    k.add_argument("--people-of", nargs="+", metavar="PAIRS",
                   help="LFW-a: also pack every image of every person in these pairs files, as training with pairs "
                        "drawn from identities needs (the best and bn512 presets): --people-of "
                        "pairsDevTrain.txt")
    k.add_argument("--size", type=int,
                   help=f"LFW-a: face size in pixels, the model's input_size, {PACK_SIZES[0]} to {PACK_SIZES[1]} "
                        f"(default: {PACK_FACE[0]})")
    k.add_argument("--crop", type=float,
                   help="LFW-a: keep the centre square of this fraction of the image side before resizing, as the "
                        f"model's config says (default: {PACK_FACE[1]:g}, the whole image)")
    k.add_argument("--cache-dir", default=cache_root(), help=_cache_help("preprocessed images"))
    k.add_argument("--debug", action="store_true")

    d = sub.add_parser("download", help="fetch LFW-a and the pairs files, verify, extract",
                       description="Download the LFW-a archive and the pairs files from their public "
                                   "hosts, verify SHA-256 sums, and extract into --data-dir. Interrupted "
                                   "downloads resume.")
    from minisiamese.data import default_data_dir
    d.add_argument("--data-dir", default=default_data_dir(), help=f"target folder (default: {_here(default_data_dir())})")
    d.add_argument("--archive-url", help="override the archive's URL (a mirror)")
    d.add_argument("--pairs-url", help="override the base URL of the pairs files (a mirror)")
    d.add_argument("--debug", action="store_true")
    return p


def _check_range(option, value, lo, hi=None, lo_open=False, why=""):
    """``option``'s value in [lo, hi] ((lo, hi] with ``lo_open``; no upper bound
    when ``hi`` is None), when it was given (:func:`errors.require_number`)."""
    if value is not None:
        require_number(option, value, lo, hi, lo_open=lo_open, why=why)


def _check_folder(option, path, kind="folder"):
    """A ConfigError naming ``option`` unless ``path`` is a folder or can be made
    one (``kind`` "file": unless a file can be written there): no folder above
    it may be a file, nor it a file (a folder, for a file)."""
    if path is None:
        return
    if kind == "file" and os.path.isdir(path):
        raise ConfigError(f"{option} {path!r} is a folder; give a file name")
    here = os.path.abspath(path if kind == "folder" else os.path.dirname(os.path.abspath(path)))
    while not os.path.lexists(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        where = " is" if here == os.path.abspath(path) else f": {here} is"
        raise ConfigError(f"{option} {path!r}{where} not a folder; give a "
                          + ("folder" if kind == "folder" else "file name in a folder"))


def _check_input(option, path, data_dir=None):
    """A ConfigError naming ``option`` when ``path`` (or, missing, its name
    inside ``data_dir``) is there but no regular file: a folder, or a named
    pipe, which reading would hang on."""
    if path is None:
        return
    found = next((p for p in (path, data_dir and os.path.join(data_dir, path)) if p and os.path.exists(p)), None)
    if found and not os.path.isfile(found):
        kind = "a folder" if os.path.isdir(found) else "a named pipe or device"
        raise ConfigError(f"{option} {found!r}: not a regular file ({kind}); give a file")


POSITIONALS = {"image1": "IMAGE1", "image2": "IMAGE2", "queries": "QUERY"}


def _check_args(args):
    """Every option in range before a command starts: no empty value, every
    numeric option in its range, every folder option a folder.  One ConfigError
    naming the first option at fault."""
    opts = vars(args)
    if args.command == "evaluate":
        _dataset_of_model(args)
    if args.command == "evaluate":
        _data_dir(args, args.dataset)          # experiments: each preset's dataset's default (report.run_experiments)
    for dest, value in opts.items():
        if "" in (value if isinstance(value, list) else [value]):
            raise ConfigError(f"{POSITIONALS.get(dest, '--' + dest.replace('_', '-'))} is empty; give a value")
    _check_range("--n-way", opts.get("n_way"), 2)
    _check_range("--batch-size", opts.get("batch_size"), 1)
    _check_range("--top", opts.get("top"), 1)
    _check_range("--threshold", opts.get("threshold"), 0, 1, why=" (a probability)")
    if opts.get("seeds") and opts.get("seed") is not None:
        raise ConfigError(f"--seed {opts['seed']} and --seeds conflict: --seeds trains each experiment once with "
                          f"each seed it names; give one of them")
    if "seed" in opts:
        args.seed = _check_seed("--seed", "0" if opts["seed"] is None else opts["seed"])
    if opts.get("seeds"):
        args.seeds = [_check_seed("--seeds", seed) for seed in opts["seeds"]]
    _check_range("--size", opts.get("size"), *PACK_SIZES, why=f" (a face needs at least {PACK_SIZES[0]} pixels "
                                                               f"a side; at {PACK_SIZES[1]} one takes 1 MB already)")
    _check_range("--crop", opts.get("crop"), 0, 1, lo_open=True, why=" (a fraction of the image side)")
    _check_folder("--cache-dir", opts.get("cache_dir"))
    _check_folder("--out", opts.get("out"))
    if args.command != "download":                   # download says what to do with the file in the way
        _check_folder("--data-dir", opts.get("data_dir"))
    _check_folder("--figure", opts.get("figure"), kind="file")
    _check_folder("--results", opts.get("results"), kind="file")
    pairs = opts.get("pairs")
    _check_input("--config", opts.get("config"))
    for path in pairs if isinstance(pairs, list) else [pairs]:
        _check_input("--pairs", path, opts.get("data_dir"))
    for path in opts.get("people_of") or []:
        _check_input("--people-of", path, opts.get("data_dir"))


def _config(args, preset=None):
    """The run's ExperimentConfig from the command line (assembled by runconfig.build_config)."""
    from minisiamese.runconfig import build_config
    return build_config(preset or getattr(args, "preset", None), getattr(args, "config", None),
                        getattr(args, "set", None) or (), getattr(args, "epochs", None),
                        getattr(args, "batch_size", None), getattr(args, "max_pairs", None),
                        getattr(args, "dataset", None))


def _dataset_of_model(args):
    """evaluate's --dataset: by default the one the model trained on; one naming another is refused."""
    from minisiamese.checkpoint import trained_dataset
    trained = trained_dataset(args.checkpoint) if os.path.isfile(args.checkpoint) else None
    if args.dataset and trained and args.dataset != trained:
        raise ConfigError(f"--dataset {args.dataset}: {args.checkpoint} was trained on {trained}; evaluate it "
                          f"with --dataset {trained} (or leave --dataset out)")
    args.dataset = args.dataset or trained or DATASETS[0]


def _data_dir(args, dataset):
    """--data-dir, or the default folder of ``dataset``."""
    from minisiamese.pipeline import default_data_dir_of
    if args.data_dir is None:
        args.data_dir = default_data_dir_of(dataset)
        _check_folder("--data-dir", args.data_dir)
    return args.data_dir


def cmd_train(args):
    from minisiamese.pipeline import train_and_evaluate
    from minisiamese.runconfig import DEFAULT_PRESETS
    cfg = _config(args)
    name = args.preset or (os.path.splitext(os.path.basename(args.config))[0] if args.config
                           else DEFAULT_PRESETS[cfg.dataset])
    out = args.out or os.path.join("runs", name)
    args.out = out                                     # for the Ctrl-C message
    data_dir = _data_dir(args, cfg.dataset)
    print(f"training {args.preset or args.config or name} ({cfg.model.num_params():,} parameters) "
          f"on {cfg.dataset} in {data_dir}, device {args.device}, output {out}", flush=True)
    train_and_evaluate(cfg, out, data_dir, args.device, args.seed, args.cache_dir, resume=args.resume,
                       progress=not args.quiet, log=lambda m: print(m, flush=True), test=not args.validation_only,
                       overwrite=args.overwrite)


def cmd_evaluate(args):
    import json
    from minisiamese.evaluate import evaluate_model_file
    from minisiamese.pipeline import evaluate_validation
    flip = None if args.flip_average is None else args.flip_average == "on"
    if args.dataset == "omniglot" and not args.validation:
        from minisiamese.config import ConfigError
        from minisiamese.evaluate import evaluate_omniglot_file, omniglot_summary
        if args.pairs:
            raise ConfigError("--pairs names an LFW-a pairs file; --dataset omniglot evaluates on Lake's runs and "
                              "the run alphabets")
        res = evaluate_omniglot_file(args.checkpoint, args.data_dir, args.device, args.out,
                                     args.cache_dir, args.seed, args.batch_size or 128, flip)
        print(json.dumps(res, indent=1))
        print("\n".join(omniglot_summary(res)), file=sys.stderr)
        return
    if args.validation:
        res = evaluate_validation(args.checkpoint, args.data_dir, args.device, args.out, args.cache_dir,
                                  args.batch_size or 128, flip)
    else:
        res = evaluate_model_file(args.checkpoint, args.data_dir, args.pairs or "pairsDevTest.txt", args.device,
                                  args.out, args.cache_dir, args.n_way, args.seed, args.batch_size or 128, flip)
    print(json.dumps(res, indent=1))
    if res.get("warning"):
        print("WARNING: " + res["warning"], file=sys.stderr)


def cmd_experiments(args):
    from minisiamese.pipeline import kept_path
    from minisiamese.report import run_experiments
    from minisiamese.runconfig import ABLATION, EXPERIMENTS
    rows = run_experiments(args.only, args.seeds, args.out, args.results, lambda name: _config(args, name),
                           args.data_dir, args.device, args.seed, args.cache_dir, log=lambda m: print(m, flush=True),
                           force=args.force, progress=not args.quiet)
    print(f"wrote {args.results} ({sum(n in rows for n in EXPERIMENTS)} of {len(EXPERIMENTS)} seed "
          f"experiments and {sum(n in rows for n in ABLATION)} of {len(ABLATION)} ablation rows finished; "
          f"results kept in {kept_path(args.results)})")


def _trained_for_use(args, images):
    """(net, normalizer, decision threshold, checkpoint path, say) for verify
    and identify; ``say()`` prints, once the answer is ready, one line naming
    the model that answers and, when ``images`` are unlike LFW-a's frames, one
    line saying so (on stderr: stdout keeps the answers, for scripts; an error
    stays the only line)."""
    from minisiamese import pretrained
    from minisiamese.data import unlike_lfw_a
    from minisiamese.evaluate import decision_threshold, load_trained
    checkpoint = args.checkpoint or pretrained.model_path()
    net, normalizer, threshold = load_trained(checkpoint, args.device)
    rule = decision_threshold(net, threshold)
    what = pretrained.DESCRIPTION if not args.checkpoint else checkpoint
    how = "calibrated: 'same' at p >= 0.5" if net.calibration is not None else \
        f"uncalibrated: 'same' at p >= {rule:.3f}, its validation threshold"

    def say():
        print(f"model: {what}; {how}; it expects faces aligned and cropped as LFW-a's (250x250 grayscale)",
              file=sys.stderr)
        odd = [note for note in map(unlike_lfw_a, images) if note]
        if odd:
            print(f"note: {len(odd)} image(s) unlike LFW-a's frames ({'; '.join(odd[:3])}"
                  f"{'; ...' if len(odd) > 3 else ''}); answering anyway, but a face not aligned as LFW-a's makes "
                  "the answer unreliable", file=sys.stderr)
    return net, normalizer, rule, checkpoint, say


def cmd_verify(args):
    from minisiamese.identify import verify_pair
    net, normalizer, rule, _, say = _trained_for_use(args, [args.image1, args.image2])
    r = verify_pair(net, normalizer, args.image1, args.image2, rule)
    say()
    print(f"{r['p']:.4f}  ({'same person' if r['same'] else 'different people'} at threshold {rule:.3f})")


def cmd_identify(args):
    from minisiamese.identify import Gallery, identify, plot_identification
    net, normalizer, threshold, checkpoint, say = _trained_for_use(args, args.queries)
    threshold = threshold if args.threshold is None else args.threshold
    gallery = Gallery(net, normalizer, args.gallery, checkpoint, args.cache_dir)
    results = identify(net, normalizer, gallery, args.queries, min(args.top, len(set(gallery.people))), threshold)
    say()
    print(f"gallery {args.gallery}: {len(set(gallery.people))} people, {len(gallery.paths)} images "
          f"({gallery.embedded} embedded now, {len(gallery.paths) - gallery.embedded} from the cache)")
    for r in results:
        ranked = "  ".join(f"{k}. {person} {p:.3f}" for k, (person, p) in enumerate(r["top"], 1))
        answer = r["answer"] or f"unknown (best {r['top'][0][1]:.3f} < threshold {threshold:.3f})"
        print(f"{r['query']}: {answer}\n    {ranked}")
    if args.figure:
        plot_identification(results, gallery, args.figure, net.config)
        print(f"figure: {args.figure}")


def cmd_pack(args):
    lfw_only = {"--pairs": args.pairs, "--people-of": args.people_of, "--size": args.size, "--crop": args.crop}
    if args.dataset == "omniglot":
        given = [option for option, value in lfw_only.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: LFW-a only; --dataset omniglot packs every image its protocol "
                              f"reads, at 105x105 (the model's input size is chosen when training)")
        return _pack_omniglot(args)
    from minisiamese.data import check_data_dir, pack_faces
    data_dir = _data_dir(args, args.dataset)
    check_data_dir(data_dir, needs=())
    if os.path.realpath(args.out) == os.path.realpath(data_dir):
        raise ConfigError(f"--out {args.out!r} is the data folder: packing would write over its pairs files; "
                          f"give a new folder")
    size, crop = args.size or PACK_FACE[0], PACK_FACE[1] if args.crop is None else args.crop
    path, n = pack_faces(data_dir, args.out, args.pairs or PACK_PAIRS, args.cache_dir, size, crop,
                         args.people_of or ())
    print(f"wrote {path}: {n} faces of {size}x{size} ({os.path.getsize(path) / 2 ** 20:.1f} MiB)")


def _pack_omniglot(args):
    from minisiamese.omniglot import pack_omniglot
    path, n, shared = pack_omniglot(_data_dir(args, args.dataset), args.out)
    print(f"wrote {path}: {n} Omniglot images of 105x105 at 1 bit a pixel ({shared} run images stored as "
          f"references to the same pixels in the sets) ({os.path.getsize(path) / 2 ** 20:.2f} MiB)")


def cmd_download(args):
    from minisiamese.download import download_lfwa
    download_lfwa(args.data_dir, archive_url=args.archive_url, pairs_url=args.pairs_url)


def _check_seed(option, value):
    """``value`` (a string or int) as an int in [0, MAX_SEED]; else a ConfigError naming ``option``."""
    text = str(value)
    # plain ASCII digits only: int() also takes "1_0", " 7" and other scripts' digits, which would
    # silently run another seed than the one the user meant; a seed has at most 10 digits
    seed = int(text) if len(text) <= 10 and text.isascii() and text.isdigit() else None
    return require_int(option, seed, 0, MAX_SEED, got=text)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "experiments": cmd_experiments,
            "verify": cmd_verify, "identify": cmd_identify, "pack": cmd_pack, "download": cmd_download}


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (which saves its step and stops by itself), e.g. during the
    evaluation: raised like Ctrl-C, so the run's folder is named and the exit status is 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


ERROR_CHARS = 600


def _clipped(text, limit=ERROR_CHARS):
    """An error line of readable length: a value pasted by mistake (a 10 MB --set, a
    binary file read as a path) is cut in the middle, saying how much was left out."""
    if len(text) <= limit + 60:                        # no cut that would not make it shorter
        return text
    keep = limit // 2
    return f"{text[:keep]} ... [{len(text) - 2 * keep} characters left out] ... {text[-keep:]}"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from minisiamese.backend import tune_cpu_allocator
    tune_cpu_allocator()
    from minisiamese import convplan
    from minisiamese.errors import USER_ERRORS
    in_main = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    try:
        _check_args(args)
        convplan.use_cache_dir(getattr(args, "cache_dir", None))
        COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {_clipped(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from minisiamese.train import TrainingInterrupted
        out = getattr(args, "out", None)
        if isinstance(exc, TrainingInterrupted):
            print(str(exc), file=sys.stderr)
            return 128 + exc.signum
        what, status = ("terminated by SIGTERM", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        if args.command in ("train", "experiments") and out:
            print(f"\n{what}: the last saved state is in {out} (checkpoint.npz); continue with --resume "
                  f"(experiments resume by themselves)", file=sys.stderr)
        else:
            print(f"\n{what}", file=sys.stderr)
        return status
    finally:
        convplan.use_cache_dir(None)
        if in_main:
            signal.signal(signal.SIGTERM, previous_term)
    return 0


if __name__ == "__main__":
    sys.exit(main())
