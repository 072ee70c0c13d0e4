"""`ms3m e2 …`: E2 tools. `ms3m e2 subscription --bundle DIR --cell CELL` prints the E2SM-KPM event trigger and
action definition (aligned PER, hex and base64) that subscribe an E2 node's cell to the KPIs a bundle needs.
Importing this module costs argparse only."""

from __future__ import annotations

import argparse
import json
import sys


def _slice(text: str) -> tuple[int, int | None]:
    sst, _, sd = text.partition(".")
    try:
        out = int(sst), (int(sd, 0) if sd else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a slice is SST or SST.SD (e.g. 1 or 1.0x000001), got {text!r}") from None
    if not 0 <= out[0] <= 255 or (out[1] is not None and not 0 <= out[1] < 1 << 24):
        raise argparse.ArgumentTypeError(f"SST is 0..255 and SD 24 bits, got {text!r}")
    return out


def _cmd_subscription(args: argparse.Namespace) -> int:
    from service.e2sm.ids import IdError
    from service.e2sm.specs import E2smError
    from service.e2sm.subscription import bundle_subscription
    from service.runtime.bundle import BundleError

    docs = []
    try:
        for cell in args.cell:
            docs.append(bundle_subscription(args.bundle, cell, kpm_version=args.kpm_version, fmt=args.format,
                                            granul_ms=args.granularity_ms, reporting_period_ms=args.reporting_period_ms,
                                            slices=args.slice or ()))
    except (BundleError, E2smError, IdError) as e:
        print(f"ms3m e2 subscription: {e}", file=sys.stderr)
        return 2
    out = sys.stderr if args.json else sys.stdout
    for d in docs:
        print(f"cell {d['cell']}: bundle {d['bundle']}, KPM v{d['kpmVersion']}.00, RIC style {d['ricStyleType']}, "
              f"action definition format {d['actionDefinitionFormat']}, {len(d['measurements'])} measurements, "
              f"granularity {d['granularityPeriodMs']} ms, reporting period {d['reportingPeriodMs']} ms", file=out)
        print(f"  binding: {d['binding']}", file=out)
        for key in ("eventTrigger", "actionDefinition"):
            print(f"  {key} hex:    {d[key]['hex']}\n  {key} base64: {d[key]['base64']}", file=out)
    if args.json:
        print(json.dumps({"command": "e2 subscription", "subscriptions": docs}))
    return 0


def add_e2_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("e2", help="E2 tools: the E2SM-KPM subscription a bundle needs",
                       description="E2 tools for putting the xApp in front of real E2 nodes (README, \"E2SM-KPM and "
                       "E2SM-RC\").")
    esub = p.add_subparsers(title="e2 commands", metavar="COMMAND")
    s = esub.add_parser(
        "subscription", help="print the E2SM-KPM event trigger and action definition for a bundle's KPIs",
        description="The E2SM-KPM RIC subscription payloads (aligned PER; hex and base64, the forms E2 "
        "terminations and the subscription manager's REST API take) that ask an E2 node for the KPIs a bundle "
        "needs (its inputs), per --cell: event trigger definition format 1 (the reporting period) and action "
        "definition format 1 (style 1: the cell's measurements; --slice adds a sliceID label for each slice) or "
        "format 4 (style 4: per-UE reports, answered with indication format 3). A cell id written as the xApp "
        "names CGIs (nr-<MCCMNC>-<NCI hex>, eutra-<MCCMNC>-<ECI hex>) goes into cellGlobalID; any other cell id "
        "is bound by registering the subscription with E2smIngest.SetSubscription(cell_id=...).",
        epilog="examples:\n  ms3m e2 subscription --bundle bundles/ms3m --cell nr-00101-00066c000\n"
        "  ms3m e2 subscription --bundle bundles/ms3m --cell gnb-001-cell-00 --slice 1 --slice 2 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--bundle", required=True, metavar="DIR", help="model bundle directory")
    s.add_argument("--cell", required=True, action="append", help="cell id (repeatable)")
    s.add_argument("--kpm-version", type=int, choices=[2, 3, 4], default=3, help="E2SM-KPM version (default 3)")
    s.add_argument("--format", type=int, choices=[1, 4], default=1,
                   help="action definition format: 1 cell measurements (default), 4 per-UE reports")
    s.add_argument("--granularity-ms", type=int, help="granularity period (default: the bundle's period_ms)")
    s.add_argument("--reporting-period-ms", type=int, help="reporting period (default: the granularity period)")
    s.add_argument("--slice", type=_slice, action="append", metavar="SST[.SD]", help="also per slice (repeatable)")
    s.add_argument("--json", action="store_true", help="print one JSON document last")
    s.set_defaults(handler=_cmd_subscription)
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])
