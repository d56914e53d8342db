"""The GPU plan (issue 36; docs/gpu_plan.md): python scripts/gpu_plan.py show|pack|stow|run|unstow|bring-back"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside ldm/, not installed

from benchmarks.gpu_plan import PLAN, RELEASE, STATE, load_plan, load_state
from ldm.cli import Parser, run
from ldm.errors import LdmError


def parse_args() -> argparse.Namespace:
    """Subcommands; every value is checked before torch is imported."""
    parser = Parser(description="Run the prepared GPU plan (plans/gpu_plan.yaml) one call at a time.")
    parser.add_argument("--plan", default=str(PLAN), help="the plan (default plans/gpu_plan.yaml)")
    parser.add_argument("--state", default=str(STATE), help="its state (default plans/gpu_state.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="the next stage, its command and the figures still to record")
    pack = sub.add_parser("pack", help="here: fill the carried folder for the next stage's call, sized")
    pack.add_argument("--dest", default=".gpu", help="the folder the call carries (default .gpu, git-ignored)")
    pack.add_argument("--no-wheels", action="store_true", help="skip downloading the device's wheels")
    size = sub.add_parser("size", help="here: what the call would send now (the tree on disk and the packed folder)")
    size.add_argument("--dest", default=".gpu", help="the packed folder (default .gpu)")
    stow = sub.add_parser("stow", help="here, before the call: keep the shipped weights/ from travelling (a commit "
                                       "is refused until unstow)")
    stow.add_argument("--dest", default=".gpu", help="the packed folder to size the call with (default .gpu)")
    sub.add_parser("unstow", help="here, after the call: weights/ back in git's index as before")
    go = sub.add_parser("run", help="on the lent machine: figures, the next stage in time, $OUT")
    go.add_argument("--out", required=True, help="folder of what must come back ($OUT)")
    go.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cuda, or cpu for a dry run")
    go.add_argument("--carry", help="the carried folder made by pack (default: this machine's packages and files)")
    go.add_argument("--work", default="/tmp/ldm-gpu", help="runs and the dataset (default /tmp/ldm-gpu)")
    go.add_argument("--budget-s", type=float, help="wall-clock seconds of the whole call (default: the plan's)")
    go.add_argument("--max-steps", type=int, help="steps of each stage instead of the time's budget (dry runs)")
    go.add_argument("--dry-run", action="store_true", help="the tiny sizes and the CPU's data: every code path")
    go.add_argument("--release", default=str(RELEASE), help="the released pipeline folder (default weights/emoji64)")
    go.add_argument("--stages", type=int, default=1, help="stages to run in this call (default 1)")
    back = sub.add_parser("bring-back", help="here: a call's returned files -> runs/gpu/<stage> and the state")
    back.add_argument("returned", help="the folder the run tool returned ($OUT's files)")
    back.add_argument("--runs", default="runs/gpu", help="where the stage's pipeline folder goes (default runs/gpu)")
    args = parser.parse_args()
    if getattr(args, "max_steps", None) is not None and args.max_steps < 1:
        raise LdmError(f"--max-steps must be at least 1, got {args.max_steps}")
    if getattr(args, "stages", 1) < 1:
        raise LdmError(f"--stages must be at least 1, got {args.stages}")
    if getattr(args, "budget_s", None) is not None and args.budget_s <= 0:
        raise LdmError("--budget-s must be positive")
    return args


def main() -> None:
    """Check the arguments, then do the subcommand."""
    args = parse_args()
    plan, state = load_plan(args.plan), load_state(args.state)
    if args.command == "show":
        from benchmarks.gpu_plan import step_budget, steps_per_s, train_command

        stage = plan.stage(state["next_stage"])
        print(f"figures to record: {', '.join(f.name for f in plan.figures if f.name not in state['figures']) or '-'}")
        if stage is None:
            print("next stage: none (the plan is done)")
            return
        seconds = plan.budget_s - plan.export_s - plan.data_s
        steps = step_budget(steps_per_s(stage, state), seconds)
        print(f"next stage: {stage.name}: {stage.what}")
        print(" ".join(train_command(stage, Path("RUN"), steps, init=Path("INIT"), data=Path("DATA"), dry=False)))
    elif args.command == "pack":
        from benchmarks.gpu_pack import pack

        show_calls(pack(plan, state, Path(args.dest).resolve(), wheels=not args.no_wheels))
    elif args.command == "size":
        from benchmarks.gpu_pack import call_size

        if not Path(args.dest).is_dir():
            raise LdmError(f"no packed folder {args.dest}: run scripts/gpu_plan.py pack first")
        show_calls(call_size(plan, state["next_stage"], Path(args.dest).resolve()))
    elif args.command == "stow":
        from benchmarks.gpu_pack import call_size
        from benchmarks.gpu_stow import stow

        print(f"stowed (on disk, out of git's index and ignored): {', '.join(f + '/' for f in stow())}")
        if Path(args.dest).is_dir():
            show_calls(call_size(plan, state["next_stage"], Path(args.dest).resolve()))
    elif args.command == "unstow":
        from benchmarks.gpu_stow import unstow

        print(f"back in git's index: {', '.join(f + '/' for f in unstow())}")
    elif args.command == "run":
        main_run(args, plan, state)
    else:
        from benchmarks.gpu_plan import bring_back

        state = bring_back(Path(args.returned), Path(args.runs), Path(args.state))
        print(f"next stage: {state['next_stage']}; weights: {state['weights']}")


def show_calls(report: dict) -> None:
    """The sizes, then the device calls to make, in order (a split pack's part calls first, on one warm machine)."""
    print(json.dumps(report, indent=2))
    print("device calls, in order (each right after the last, while the machine is warm):")
    for call in report["calls"]:
        name, last = call["carry"], call is report["calls"][-1]
        command = "bash plans/gpu_run.sh" if last else f"bash plans/gpu_part.sh {name}"
        print(f'  run(command="{command}", carry=["{name}"], timeout_s={600 if last else 120})'
              f'  # {call["total_mib"]} MiB')


def main_run(args: argparse.Namespace, plan, state: dict) -> None:
    """One call on the lent machine (or a CPU dry run): the new state is printed and written under --out."""
    from benchmarks.gpu_pack import unpack_encoder
    from benchmarks.gpu_plan import run_plan, sigterm_as_ctrl_c

    sigterm_as_ctrl_c()
    carry = Path(args.carry) if args.carry else None
    site = carry / "site" if carry else None
    if site is not None:
        unpack_encoder(site)
    init = carry / "init" if carry and (carry / "init").is_dir() else None
    font = next(iter(sorted(carry.glob("*.ttf"))), None) if carry else None
    stage = plan.stage(state["next_stage"])
    release = Path(args.release) if not init or (stage and stage.init_from == "previous") else init
    previous = init if stage and stage.init_from == "previous" else None
    new = run_plan(plan, state, Path(args.out), Path(args.work), device=args.device,
                   budget_s=args.budget_s or plan.budget_s, dry=args.dry_run, max_steps=args.max_steps,
                   release=release, previous=previous, font=font, site=site, stages=args.stages)
    print(json.dumps({k: new[k] for k in ("next_stage", "weights")} | {"runs": new["runs"][-args.stages:]}, indent=2))


if __name__ == "__main__":
    run(main)
