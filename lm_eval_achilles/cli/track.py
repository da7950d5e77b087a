"""``achilles track CKPT...``: locate every checkpoint of a series (cached) and show how the critical set
moves: one table, one plot (exit 0, 2 bad input)."""

from __future__ import annotations

from lm_eval_achilles.cli.common import add_load_arguments, add_locator_arguments, add_overwrite_argument

HELP = "locate each checkpoint of a series (cached) and tabulate/plot critical-set size, Delta and overlap"


def add_arguments(p):
    p.add_argument(
        "checkpoints",
        nargs="*",
        help="checkpoints in order: local folders, named models (embedded, gemma-3-270m), hub ids, ID@REVISION",
    )
    p.add_argument("--list", default=None, metavar="FILE", help="read the checkpoints from a file, one per line")
    p.add_argument("--out", required=True, help="output folder: track.md, track.json, track.png, masks/")
    add_load_arguments(p, device_map=False)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_overwrite_argument(p)
    add_locator_arguments(p)


def run(args) -> int:
    import shlex
    import sys

    from lm_eval_achilles.cli.common import check_modules_before_loading, locator_config
    from lm_eval_achilles.comparison.track import (
        check_checkpoints,
        read_checkpoint_list,
        run_track,
        track_table,
        write_track,
    )
    from lm_eval_achilles.errors import AchillesError
    from lm_eval_achilles.models.loading import load_model
    from lm_eval_achilles.validate import check_output

    entries = list(args.checkpoints) + (read_checkpoint_list(args.list) if args.list else [])
    if not entries:
        raise AchillesError("no checkpoint given: list them as arguments or in --list FILE")
    cfg = locator_config(args)
    check_checkpoints(entries)  # every entry before any work
    check_output(args.out, results=["track.json"], overwrite=args.overwrite)
    # --modules against the first checkpoint's skeleton, before any work (the others share its architecture
    # or fail at their own locate)
    args.model, args.gguf_file, args.revision = entries[0], None, None
    check_modules_before_loading(args, cfg.modules)

    def load(entry):
        return load_model(entry, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code)

    track = run_track(entries, args.out, cfg, load)
    command = "achilles " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["track"] else ""
    paths = write_track(track, args.out, command=command)
    print(track_table(track))
    for key, path in paths.items():
        print(f"{key:<6} {path}")
    return 0
