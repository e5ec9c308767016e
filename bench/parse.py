"""Parse + route benchmark: the per-mail cost of ``parse_mail`` and ``route_mail`` on real-world mail.

    python bench/parse.py                              # from the project root, or from anywhere
    python bench/parse.py --repeat 5
    python bench/parse.py --baseline /tmp/old/pkg      # also time an older copy, print the ratio
    python bench/parse.py --baseline /tmp/old/pkg --rounds 4

The slice is fixed: every third mail of ../shared/corpus/real-world/MANIFEST.tsv (in manifest order), so
figures from different days compare.  Each mail is parsed and routed ``--repeat`` times and its fastest run
kept; the time is the process's CPU time, so that other work on a shared machine does not count.
Prints the number of mails, the mean cost per mail (the sum of the fastest runs over the slice, which is
what a busy desk pays), median, p95 and max.

``--baseline DIR`` names a folder holding an older ``maildesk`` package laid out as installed
(``DIR/maildesk/parsers``, ``DIR/maildesk/workflow`` ...; for example made from ``git archive`` of an
older commit).  Both copies are then timed in child processes, alternately for ``--rounds`` rounds
(each mail's fastest run over all rounds counts), and the ratio of mean costs is printed.  Nothing is asserted; without the corpus it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "real-world"
EVERY = 3


def corpus_slice() -> list[Path]:
    lines = (CORPUS / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [CORPUS / line.split("\t", 1)[0] for line in lines[::EVERY]]


def measure(repeat: int) -> list[float]:
    """Fastest parse + route of each mail of the slice, in CPU seconds (with whatever maildesk is importable)."""
    from maildesk.parsers.mime import parse_mail
    from maildesk.workflow.route import Directory, route_mail

    class NoTickets:
        def get_ticket(self, number):
            return None

        def ticket_for_message_id(self, message_id):
            return None

        def outbound_by_message_id(self, message_id):
            return None

    directory = Directory(support_address="support@example.com", prefix="TS", technicians=frozenset(),
                          supervisor=None, leadership=frozenset())
    lookup = NoTickets()
    times = []
    for path in corpus_slice():
        raw = path.read_bytes()
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            route_mail(parse_mail(raw), lookup, directory)
            best = min(best, time.process_time() - started)
        times.append(best)
    return times


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (f"{label:<10} {len(ms):>4} mails   mean {statistics.fmean(ms):.3f} ms   median "
            f"{statistics.median(ms):.3f} ms   p95 {p95:.3f} ms   max {ms[-1]:.3f} ms")


def child(package_root: Path, repeat: int) -> list[float]:
    """``measure`` in a fresh interpreter importing the maildesk found under ``package_root``."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--json", "--repeat", str(repeat)],
                          env=env, cwd=str(package_root), capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mail; the fastest counts (default 3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --baseline: alternate the two copies this often, fastest run counts (default 2)")
    parser.add_argument("--baseline", type=Path, help="folder holding an older maildesk package to compare")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child's answer
    args = parser.parse_args()
    if not (CORPUS / "MANIFEST.tsv").is_file():
        print(f"no real-world corpus at {CORPUS}: nothing to time")
        return 0
    if args.json:
        print(json.dumps(measure(args.repeat)))
        return 0
    print(f"real-world corpus {CORPUS}: every {EVERY}rd mail, fastest of {args.repeat} runs per mail")
    if not args.baseline:
        sys.path.insert(0, str(REPO))
        print(summary("current", measure(args.repeat)))
        return 0
    # Child processes, so that the two copies never share an interpreter; alternated, so that
    # the load of a shared machine falls on both alike.
    current: list[float] = []
    older: list[float] = []
    for _ in range(max(1, args.rounds)):
        for times, root in ((current, REPO), (older, args.baseline.resolve())):
            fresh = child(root, args.repeat)
            times[:] = [min(a, b) for a, b in zip(times, fresh)] if times else fresh
    print(summary("current", current))
    print(summary("baseline", older))
    print(f"ratio current / baseline (mean per mail): {statistics.fmean(current) / statistics.fmean(older):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
