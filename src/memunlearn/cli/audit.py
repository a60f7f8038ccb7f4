"""``memunlearn audit``: is the forget set distinguishable from held-out data through a saved model?
No oracle needed (:func:`memunlearn.auditing.audit`)."""

from __future__ import annotations

import argparse
import warnings

from ..errors import ConfigError
from .common import positive_int
from .localize import add_checkpoint_options

HOLDOUTS = ("validation", "test")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit", help="audit an unlearned model without the oracle: does the forget set still look like training data?",
        description="Compare the forget set with held-out data the model never trained on, through the model: "
        "accuracy and loss per class with two-sample tests, a membership attack needing no oracle, the forget "
        "examples that still look like members (ranked), and a pass / fail / other-distribution verdict. Example: "
        "memunlearn audit --checkpoint runs/del/model.safetensors --forget indices:runs/del/forget_indices.txt "
        "--holdout test --out runs/del/audit",
    )
    add_checkpoint_options(parser)
    parser.add_argument("--holdout", choices=HOLDOUTS, default="validation",
                        help="held-out data: validation (the --validation N training examples the model was trained "
                        "without; default) or test (the test set, if you say so)")
    parser.add_argument("--validation", type=positive_int, metavar="N",
                        help="size of the validation split held out of the training data (with --holdout validation)")
    parser.add_argument("--alpha", type=float, default=0.05, help="level of the verdict (default 0.05)")
    parser.add_argument("--flag-rate", type=float, default=0.05,
                        help="share of held-out data above the member-flag threshold (default 0.05)")
    parser.add_argument("--attack", default="auto", help="membership attack: auto (default), population or none")
    parser.add_argument("--original", metavar="CHECKPOINT",
                        help="the model before unlearning: a model that lost held-out accuracy against it fails")
    parser.add_argument("--top", type=positive_int, default=10, help="flagged examples shown (default 10)")
    parser.add_argument("--json", metavar="FILE", help="write the audit as strict JSON")
    parser.add_argument("--out", help="directory for audit.json and report.html")
    parser.set_defaults(func=run)


def _load(args: argparse.Namespace):
    """(model, setting, forget set, held-out examples), every check done before any work."""
    from ..checkpoints import load_model
    from ..experiment import RunConfig, resolve_setting
    from ..experiment.setup import hold_out_validation
    from ..forget import make_forget_set
    from .localize import load_checkpoint_and_data

    if args.holdout == "test":
        if args.validation is not None:
            raise ConfigError("--validation is for --holdout validation; with --holdout test leave it out")
        model, _, setting, forget_set = load_checkpoint_and_data(args)
        return model, setting, forget_set, setting.dataset.test
    if args.validation is None:
        raise ConfigError("--holdout validation needs --validation N (the N training examples the model was trained "
                          "without); or pass --holdout test to audit against the test set")
    model, _, metadata = load_model(args.checkpoint)
    dataset = args.dataset or metadata.get("dataset") or "digits"
    data_dir = args.data_dir if args.data_dir is not None else metadata.get("data_dir")
    subset = args.train_subset if args.train_subset is not None else metadata.get("train_subset")
    setting = resolve_setting(RunConfig(dataset=dataset, data_dir=data_dir, train_subset=subset, device=args.device,
                                        model=metadata.get("model"), width=metadata.get("width")))
    full = setting.dataset.fingerprint
    setting.dataset = hold_out_validation(setting.dataset, args.validation)
    recorded = metadata.get("data_fingerprint")
    if recorded == full:
        raise ConfigError(f"{args.checkpoint} was trained on the whole training set, so a validation split of it "
                          "overlaps the training data: pass --holdout test, or audit a model trained without the "
                          f"{args.validation} validation examples")
    if recorded and recorded != setting.dataset.fingerprint:
        raise ConfigError(f"{args.checkpoint} was trained on other data (fingerprint {recorded}); pass the "
                          "--dataset/--data-dir/--train-subset/--validation it was trained with")
    if not recorded:
        warnings.warn(f"{args.checkpoint} records no data fingerprint: cannot check that it never trained on the "
                      "validation split", stacklevel=2)
    forget_set = make_forget_set(args.forget, setting.dataset, args.seed)
    return model, setting, forget_set, setting.dataset.test


def run(args: argparse.Namespace) -> int:
    from ..auditing import Auditor, ranked_rule
    from ..io import check_output_dir, check_output_file, write_json

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {args.alpha}")
    if not 0 < args.flag_rate < 1:
        raise ConfigError(f"--flag-rate must be in (0, 1), got {args.flag_rate}")
    json_path = check_output_file(args.json, "--json") if args.json else None
    out = check_output_dir(args.out, "--out") if args.out else None
    model, setting, forget_set, holdout = _load(args)
    original = None
    if args.original:
        from ..checkpoints import load_model

        original = load_model(args.original)[0]
        if [tuple(p.shape) for p in original.parameters()] != [tuple(p.shape) for p in model.parameters()]:
            raise ConfigError(f"the original {args.original} is a different architecture from {args.checkpoint}")
    train = setting.dataset.train
    forget, retain = train.subset(forget_set.indices), train.subset(forget_set.retain_indices(len(train)))
    auditor = Auditor(forget, holdout, retain, alpha=args.alpha, flag_rate=args.flag_rate, attack=args.attack,
                      forget_indices=forget_set.indices, seed=args.seed, selected_by=ranked_rule(args.forget),
                      original=original, device=setting.device)
    report = auditor.audit(model, setting.device)
    payload = {**report.to_dict(), "checkpoint": str(args.checkpoint), "forget_set": forget_set.to_dict(),
               "holdout": args.holdout, "dataset": setting.dataset.name}
    for line in report.summary_lines(args.top):
        if not line.startswith("  warning: "):
            print(line)
    for line in report.warnings:
        warnings.warn(line, stacklevel=2)
    if json_path is not None:
        write_json(json_path, payload)
        print(f"audit written to {json_path}")
    if out is not None:
        from ..io import atomic_path
        from ..report.sections import audit_report_html

        write_json(out / "audit.json", payload)
        with atomic_path(out / "report.html") as tmp:
            tmp.write_text(audit_report_html(payload))
        print(f"audit.json and report.html written to {out}/")
    return 0
