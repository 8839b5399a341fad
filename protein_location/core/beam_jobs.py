"""Running a stage on Apache Beam (`--runner beam --beam-options "..."`):
conversion (`data_prep.beam_convert`) and batch prediction
(`protein_location.inference.beam_predict`) build their pipelines; this module checks
that Beam is installed, turns the `--beam-options` string into Beam's
`PipelineOptions`, and runs a pipeline to its end.

Without `--beam-options` a pipeline runs on Beam's DirectRunner in this
machine's processes; with them, on whatever runner they name (Dataflow,
Flink, Spark), whose workers need this project installed (docs/scaling-out.md, "Scaling
out the data"). Beam is an extra, `pip install 'protein-location[beam]'`:
this module imports it only when a pipeline is asked for.
"""

import logging
import shlex

RUNNERS = ("local", "beam")
BEAM_MISSING = "--runner beam needs Apache Beam: pip install 'protein-location[beam]'"
# Beam's SDK workers log every channel they open at INFO, per worker; a user's
# own --default_sdk_harness_log_level wins.
QUIET_WORKERS = "--default_sdk_harness_log_level=WARNING"


def check_runner(runner, beam_options, error_class):
    """Refuses, before any work, `--beam-options` without `--runner beam`, and
    `--runner beam` where Beam is not installed or the options do not parse:
    one line, `error_class` (the stage's error)."""
    if runner not in RUNNERS:
        raise error_class(f"`runner` must be {' or '.join(RUNNERS)}, got {runner!r}")
    if runner != "beam":
        if beam_options:
            raise error_class("`beam_options` needs `runner` beam")
        return
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise error_class(BEAM_MISSING) from None
    pipeline_options(beam_options, error_class)


def pipeline_options(beam_options, error_class):
    """Beam's PipelineOptions from the `--beam-options` string (shell words,
    as on Beam's own command lines); DirectRunner where it names no runner.
    Arguments Beam does not know are refused, not dropped with a warning: a
    misspelt `--project` must not start a job somewhere else."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    try:
        flags = shlex.split(beam_options or "")
    except ValueError as error:
        raise error_class(f"`beam_options` {beam_options!r}: {error}") from None
    if not any(flag.startswith("--default_sdk_harness_log_level") for flag in flags):
        flags.append(QUIET_WORKERS)
    options = PipelineOptions(flags)
    unknown = [
        flag
        for flag in options.get_all_options(retain_unknown_options=True, drop_default=True)
        if flag not in options.get_all_options()
    ]
    if unknown:
        raise error_class(f"`beam_options`: Beam does not know {', '.join('--' + u for u in sorted(unknown))}")
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "DirectRunner"
    return options


def runner_name(options):
    from apache_beam.options.pipeline_options import StandardOptions

    return str(options.view_as(StandardOptions).runner)


def run(build, beam_options, error_class):
    """Builds a pipeline with `build(pipeline)` and runs it to its end. A stop
    signal while it runs ends the wait at once (`stop_signals.interruptible`):
    on DirectRunner the workers go with this process, on a service the job
    goes on until cancelled there (its outputs are written whole or not at
    all, and a resume reuses them)."""
    import apache_beam as beam

    from protein_location.core import stop_signals

    options = pipeline_options(beam_options, error_class)
    for name in ("apache_beam", "apache_beam.runners.portability.local_job_service"):
        logging.getLogger(name).setLevel(logging.WARNING if name == "apache_beam" else logging.ERROR)
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    with stop_signals.interruptible():
        result = pipeline.run()
        result.wait_until_finish()
    return runner_name(options)
