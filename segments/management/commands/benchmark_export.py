import json

from django.core.management.base import BaseCommand, CommandError

from segments.deletion.export_benchmark import benchmark_export, format_table


class Command(BaseCommand):
    help = (
        "Measure the web process's memory while it streams a segment's CSV export "
        "(Export before deleting), for segments of several sizes, in alternating runs. "
        "Uses its own database; prints figures, asserts none."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
        parser.add_argument("--runs", type=int, default=3, help="Downloads per size.")
        parser.add_argument("--json", dest="json_path", help="Also write the figures here.")
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark database.")
        parser.add_argument("--prefix", default="vero_bench", help="Database name prefix.")

    def handle(self, *args, **o):
        if min(o["sizes"]) < 1 or o["runs"] < 1:
            raise CommandError("--sizes and --runs must be at least 1.")
        result = benchmark_export(
            sizes=sorted(set(o["sizes"])),
            runs=o["runs"],
            prefix=o["prefix"],
            keep=o["keep"],
            log=self.stdout.write,
        )
        self.stdout.write("")
        self.stdout.write(format_table(result))
        if o["json_path"]:
            with open(o["json_path"], "w") as f:
                json.dump(result, f, indent=2)
            self.stdout.write(f"\nWrote {o['json_path']}")
