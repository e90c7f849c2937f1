import json

from django.core.management.base import BaseCommand, CommandError

from segments.deletion.benchmark import BenchConfig, benchmark_deletion, format_table


class Command(BaseCommand):
    help = (
        "Measure the segment deletion job against three floors (the same erasure in a "
        "PL/pgSQL batch loop, as one transaction over an id array, and as one transaction "
        "of joins) and the naive ORM delete, alternating on identical copies of a generated "
        "dataset, with web and API latency measured while the job runs. Uses its own "
        "databases; prints figures."
    )

    def add_arguments(self, parser):
        parser.add_argument("--profiles", type=int, default=10_000)
        parser.add_argument("--events-per-profile", type=int, default=10)
        parser.add_argument("--segment-share", type=float, default=0.5)
        parser.add_argument(
            "--requests",
            type=int,
            default=500,
            help="Idle requests of each kind before a probed run (default 500: the p99 of "
            "200 samples is their third-slowest).",
        )
        parser.add_argument("--json", dest="json_path", help="Also write the figures here.")
        parser.add_argument("--no-naive", action="store_true", help="Skip the naive ORM delete.")
        parser.add_argument("--no-http", action="store_true", help="Skip the latency sampling.")
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark databases.")
        parser.add_argument("--prefix", default="vero_bench", help="Database name prefix.")
        parser.add_argument(
            "--repeat", type=int, default=3, help="Rounds of ours and each floor (default 3)."
        )
        parser.add_argument(
            "--probed-rounds",
            type=int,
            default=1,
            help="Rounds of ours and the exact-work floor with the pages and the API under "
            "load, alternating (default 1).",
        )
        parser.add_argument(
            "--no-phases", action="store_true", help="Skip the per-statement timing run."
        )
        parser.add_argument(
            "--runners",
            default="1",
            help="DELETION_RUNNERS for ours, comma-separated (e.g. 1,2,4): each measured "
            "every round, alternating with the floors (default 1).",
        )

    def handle(self, *args, **o):
        if o["profiles"] < 10 or o["events_per_profile"] < 0:
            raise CommandError("--profiles must be at least 10 and --events-per-profile >= 0.")
        if not 0 < o["segment_share"] <= 1:
            raise CommandError("--segment-share must be in (0, 1].")
        if o["repeat"] < 1:
            raise CommandError("--repeat must be at least 1.")
        if o["probed_rounds"] < 1:
            raise CommandError("--probed-rounds must be at least 1.")
        if o["probed_rounds"] > 1 and o["no_http"]:
            raise CommandError("--probed-rounds needs the probe: drop --no-http.")
        try:
            runners = tuple(int(n) for n in o["runners"].split(","))
        except ValueError:
            raise CommandError(
                "--runners must be numbers separated by commas, e.g. 1,2,4."
            ) from None
        if (
            not runners
            or not all(1 <= n <= 16 for n in runners)
            or len(set(runners)) != len(runners)
        ):
            raise CommandError("--runners must be distinct numbers from 1 to 16.")
        config = BenchConfig(
            profiles=o["profiles"],
            events_per_profile=o["events_per_profile"],
            segment_share=o["segment_share"],
            requests=o["requests"],
            naive=not o["no_naive"],
            http=not o["no_http"],
            prefix=o["prefix"],
            keep=o["keep"],
            repeat=o["repeat"],
            phases=not o["no_phases"],
            runners=runners,
            probed_rounds=o["probed_rounds"],
        )
        result = benchmark_deletion(config, log=self.stdout.write)
        self.stdout.write("")
        self.stdout.write(format_table(result))
        if o["json_path"]:
            with open(o["json_path"], "w") as f:
                json.dump(result, f, indent=2, default=str)
            self.stdout.write(f"\nWrote {o['json_path']}")
        if not result["verified"]:
            raise CommandError("The end state did not verify; see the figures above.")
