"""Run a recipe's plan: each step that is not done, in order, with its log and stamp."""
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch

from ..utils.progress import track
from .plan import Step, StepState, remove_stamp, status, step_parts, write_stamp
from .spec import Recipe


class StepFailed(RuntimeError):
    """A step's command or function failed; the message names the step and its log."""


def select_steps(states: list[StepState], only: Sequence[str] = (), start: str | None = None
                 ) -> list[StepState]:
    """The steps to run: those not done, limited to ``only`` patterns (fnmatch), and from
    ``start`` on every step in plan order, done or not (``--from``).

    Raises:
        ValueError: ``start`` or an ``only`` pattern matches no step.
    """
    names = [s.step.name for s in states]
    for pattern in only:
        if not any(fnmatch(n, pattern) for n in names):
            raise ValueError(f'--only {pattern}: no such step (steps: {", ".join(names)})')
    if start is not None and start not in names:
        raise ValueError(f'--from {start}: no such step (steps: {", ".join(names)})')
    forced = set(names[names.index(start):]) if start is not None else set()
    return [s for s in states
            if (s.run or s.step.name in forced)
            and (not only or any(fnmatch(s.step.name, p) for p in only))]


def run_step(recipe: Recipe, step: Step, deps: dict[str, str], gpu: int | None = None
             ) -> tuple[float, dict]:
    """Run one step: no stamp while it runs, its output in ``step.log``, a stamp when done.

    Returns:
        Its seconds, and the parts its stamp records (``step_parts``).

    Raises:
        StepFailed: the step failed; its stamp stays absent, so a rerun runs it again.
    """
    remove_stamp(recipe, step)
    seconds = perform(step, gpu)
    # the inputs as they were used: a checkpoint exists only once its training ran
    parts = step_parts(step, deps)
    write_stamp(recipe, step, parts, seconds)
    return seconds, parts


def perform(step: Step, gpu: int | None = None) -> float:
    """Run a step's command or function, its output in ``step.log``; its seconds.

    Raises:
        StepFailed: it failed (names the step and its log).
    """
    step.folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log = step.folder / 'step.log'
    if step.command is not None:
        argv = step.command()
        env = dict(os.environ)
        if gpu is not None:  # --parallel-folds: one GPU for each training at a time
            env['CUDA_VISIBLE_DEVICES'] = str(gpu)
        with open(log, 'w') as f:
            f.write(' '.join(argv) + '\n')
            f.flush()
            code = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            tail = log.read_text().strip().splitlines()[-1:] or ['']
            raise StepFailed(f'{step.name} failed (exit status {code}): {tail[0]} '
                             f'(log: {log})')
    else:
        try:
            step.function(step)
        except (ValueError, OSError) as e:
            raise StepFailed(f'{step.name} failed: {e}') from None
    return time.perf_counter() - start


def execute(recipe: Recipe, steps: list[Step], only: Sequence[str] = (),
            start: str | None = None, parallel_folds: int = 1, echo=print) -> list[str]:
    """Run what is not done; one line per step (``[3/14] oof/unet/fold0 ran in 12.1 s``)
    and, on a terminal, a progress bar over the whole plan.

    ``parallel_folds`` > 1 trains that many folds side by side (consecutive training steps:
    the plan lists every training first), each on its own GPU (``CUDA_VISIBLE_DEVICES``).

    Returns:
        The names of the steps that ran.
    """
    states = status(recipe, steps)
    chosen = {s.step.name for s in select_steps(states, only, start)}
    digests: dict[str, str] = {}
    ran: list[str] = []
    total = len(steps)

    def deps_of(step: Step) -> dict[str, str]:
        return {d: digests[d] for d in step.deps}

    checked = {s.step.name: s.parts for s in states}

    def finish(i: int, step: Step, seconds: float | None, parts: dict | None = None) -> None:
        """Record a step's digest for the steps after it, and say what happened."""
        if parts is None:
            # a step left as it was, after deps left as they were, keeps the parts status()
            # computed (for a training, that loads its config once, not twice)
            parts = checked[step.name]
            if parts['deps'] != deps_of(step):
                parts = step_parts(step, deps_of(step))
        digests[step.name] = parts['self']
        what = 'done' if seconds is None else f'ran in {seconds:.1f} s'
        echo(f'[{i + 1}/{total}] {step.name}: {what}')

    def run_from(i: int) -> Iterator[None]:
        """Step ``i`` (or, with ``parallel_folds``, a batch of trainings from it); yields
        once per finished step and returns the index after it."""
        step = steps[i]
        if step.name not in chosen:
            finish(i, step, None)
            yield
            return i + 1
        batch = [i]
        if parallel_folds > 1 and step.name.startswith('train/'):
            while (len(batch) < parallel_folds and batch[-1] + 1 < total
                   and steps[batch[-1] + 1].name.startswith('train/')
                   and steps[batch[-1] + 1].name in chosen):
                batch.append(batch[-1] + 1)
        if len(batch) == 1:
            seconds, parts = run_step(recipe, step, deps_of(step))
            ran.append(step.name)
            finish(i, step, seconds, parts)
            yield
            return i + 1
        for j in batch:
            remove_stamp(recipe, steps[j])
        # threads only wait for the commands; the stamps (which load configs, and
        # pkg_resources is not thread-safe) are written here, one by one
        with ThreadPoolExecutor(len(batch)) as pool:
            futures = [pool.submit(perform, steps[j], gpu) for gpu, j in enumerate(batch)]
            results = [f.result() for f in futures]
        for j, seconds in zip(batch, results):
            parts = step_parts(steps[j], deps_of(steps[j]))
            write_stamp(recipe, steps[j], parts, seconds)
            ran.append(steps[j].name)
            finish(j, steps[j], seconds, parts)
            yield
        return batch[-1] + 1

    def run_all() -> Iterator[None]:
        i = 0
        while i < total:
            i = yield from run_from(i)

    for _ in track(run_all(), total=total, description='recipe'):  # a bar on a terminal
        pass
    return ran


def submit_slurm(recipe: Recipe, steps: list[Step], run_args: Sequence[str],
                 only: Sequence[str] = (), start: str | None = None,
                 partition: str | None = None, sbatch: str = 'sbatch', echo=print
                 ) -> dict[str, str]:
    """Submit each step that is not done as a SLURM job, after the jobs of its deps.

    Each job runs ``tools/run_recipe.py RECIPE --only STEP`` (``run_args``: the recipe and
    its ``--cfg-options``), so it computes its command and writes its stamp as a local run
    does, and a resubmitted plan submits only what has no stamp. Training jobs ask for the
    model's GPUs (``--gres=gpu:N``), dumps for one.

    Returns:
        The job id of each submitted step.

    Raises:
        StepFailed: ``sbatch`` refused a job (its message).
    """
    import shlex
    import sys
    from pathlib import Path
    tools = Path(__file__).resolve().parents[2] / 'tools'
    states = status(recipe, steps)
    chosen = [s.step for s in select_steps(states, only, start)]
    scripts = Path(recipe.work_dir) / 'slurm'
    scripts.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, str] = {}
    for i, step in enumerate(chosen):
        step.folder.mkdir(parents=True, exist_ok=True)
        script = scripts / (step.name.replace('/', '__') + '.sh')
        argv = [sys.executable, str(tools / 'run_recipe.py'), *run_args, '--only', step.name]
        if start is not None:
            argv += ['--from', step.name]  # the job redoes its step, as --from asked
        script.write_text('#!/usr/bin/env bash\nset -euo pipefail\n'
                          f'exec {shlex.join(argv)}\n')
        options = [f'--job-name={step.name}', f'--output={step.folder / "slurm-%j.out"}']
        if step.gpus:
            options.append(f'--gres=gpu:{step.gpus}')
        if partition:
            options.append(f'--partition={partition}')
        after = [jobs[d] for d in step.deps if d in jobs]
        if after:
            options.append('--dependency=afterok:' + ':'.join(after))
        run = subprocess.run([sbatch, '--parsable', *options, str(script)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise StepFailed(f'{step.name}: sbatch failed ({run.stderr.strip() or run.returncode})')
        jobs[step.name] = run.stdout.strip().split(';')[0]  # "id" or "id;cluster"
        echo(f'[{i + 1}/{len(chosen)}] {step.name}: job {jobs[step.name]}'
             + (f' after {", ".join(after)}' if after else ''))
    return jobs
