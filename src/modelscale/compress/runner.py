"""Run a search: build and evaluate each candidate, time them together, fall back when needed."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from modelscale.compress import candidates as cands
from modelscale.compress import graphfix
from modelscale.compress.choose import describe_trial
from modelscale.compress.evaluate import Latency, measure_rounds
from modelscale.compress.fallback import rank_nodes
from modelscale.compress.prepare import Plan
from modelscale.compress.prune import PruneSpec, prune_torch
from modelscale.compress.results import Trial
from modelscale.compress.trials import first_line
from modelscale.errors import RuntimeFailure
from modelscale.model.artifact import ModelArtifact
from modelscale.model.inputs import default_batches
from modelscale.progress import OnProgress, report

__all__ = ["Search"]


def _copy(source: pathlib.Path, dest: pathlib.Path) -> None:
    shutil.copyfile(source, dest)


class Search:
    """One search's state: the trials so far and where their files are."""

    def __init__(
        self,
        plan: Plan,
        work: pathlib.Path,
        on_progress: OnProgress | None,
        prune: PruneSpec | None,
    ) -> None:
        self.plan = plan
        self.prune = prune
        self.work = work
        self.on_progress = on_progress
        self.trials: list[Trial] = []
        self.paths: dict[str, pathlib.Path] = {}
        self.bases: dict[str, pathlib.Path] = {}
        """The model each quantized candidate was built from (an opset upgrade of the base, where
        the method needs one): the fallback compares nodes against it."""
        self._upgraded: dict[int, pathlib.Path | str] = {}
        self.done = 0
        # Each candidate is one step to build and evaluate, and one step to time.
        self.total = 2 * (1 + len(plan.specs) + (len(prune.ratios) if prune else 0))

    def _tick(self, step: str, advance: int = 0) -> None:
        self.done += advance
        report(self.on_progress, step, self.done, self.total)

    def _failed(
        self,
        spec: cands.CandidateSpec,
        params: dict[str, Any],
        error: str,
        excluded: Sequence[str],
        seconds: float,
        *,
        status: str = "failed",
    ) -> Trial:
        return Trial(
            name=spec.name,
            method=spec.method,
            description=spec.description,
            status=status,
            error=error,
            size_bytes=None,
            sha256=None,
            metric=None,
            change=None,
            ci_low=None,
            ci_high=None,
            drop=None,
            passed=False,
            latency={},
            batch=self.plan.batch,
            slower=False,
            pareto=False,
            excluded=tuple(excluded),
            build_seconds=seconds,
            eval_seconds=0.0,
            summary="",
            params=params,
        )

    def skip(self, spec: cands.CandidateSpec, reason: str) -> Trial:
        """Record ``spec`` as skipped for ``reason`` (one line), without building it."""
        self._tick(f"{spec.name}: skipped")
        params = {"method": spec.method, **spec.options}
        trial = self._failed(spec, params, reason, (), 0.0, status="skipped")
        self.trials.append(trial)
        self._tick(f"{spec.name}: skipped", 2)  # never timed either
        return trial

    def trial(
        self,
        spec: cands.CandidateSpec,
        build: Callable[[pathlib.Path], str | None] | None,
        *,
        excluded: Sequence[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> Trial:
        """Build (unless ``build`` is None: the original) and evaluate one candidate.

        ``build`` writes the candidate to the path it is given and returns None, or a reason to
        skip the candidate (then it is neither evaluated nor kept).
        """
        self._tick(f"{spec.name}: building")
        path = self.plan.artifact.path if build is None else self.work / f"{spec.name}.onnx"
        params = {"method": spec.method, **spec.options, **(extra or {})}
        started = time.perf_counter()
        built = 0.0
        try:
            skip = build(path) if build is not None else None
            built = time.perf_counter() - started
            if skip is not None:
                trial = self._failed(spec, params, skip, excluded, built, status="skipped")
                self.trials.append(trial)
                self._tick(f"{spec.name}: skipped", 2)  # never timed either
                return trial
            art = ModelArtifact.load(path, name=spec.name)
            self._tick(f"{spec.name}: evaluating")
            scores = self.plan.judge.evaluate(path, original=build is None)
        except Exception as exc:  # a broken candidate is reported, and the search goes on
            trial = self._failed(
                spec, params, first_line(exc), excluded, time.perf_counter() - started
            )
        else:
            trial = Trial(
                name=spec.name,
                method=spec.method,
                description=spec.description,
                status="ok",
                error=None,
                size_bytes=art.size_bytes,
                sha256=art.sha256,
                metric=scores["metric"],
                change=scores["change"],
                ci_low=scores["ci_low"],
                ci_high=scores["ci_high"],
                drop=scores["drop"],
                passed=scores["passed"],
                latency={},
                batch=self.plan.batch,
                slower=False,
                pareto=False,
                excluded=tuple(excluded),
                build_seconds=built,
                eval_seconds=time.perf_counter() - started - built,
                summary="",
                params=params,
            )
            self.paths[spec.name] = path
        self.trials.append(trial)
        self._tick(f"{spec.name}: evaluated", 1)
        return trial

    def time(
        self, names: Sequence[str], *, update: Sequence[str] | None = None
    ) -> dict[str, dict[int, Latency]]:
        """Time the named ok trials together, in alternating rounds.

        The trials named in ``update`` (default: all) take the new latencies; a trial that fails
        to run is marked failed. Returns the latencies of every model that ran.
        """
        judge = self.plan.judge
        paths = {n: self.paths[n] for n in names if n in self.paths}
        latency, errors = measure_rounds(
            paths,
            signature=judge.signature,
            data=judge.inputs,
            batches=judge.batches,
            engine_options=judge.engine_options,
            measure=judge.measure,
            on_model=lambda n: self._tick(f"{n}: timing"),
        )
        targets = set(names if update is None else update)
        for i, t in enumerate(self.trials):
            if t.name not in targets:
                continue
            if t.name in errors:
                t = dataclasses.replace(
                    t, status="failed", error=f"timing failed: {errors[t.name]}", passed=False
                )
                self.paths.pop(t.name, None)
            elif t.name in latency:
                t = dataclasses.replace(t, latency=latency[t.name])
            else:
                continue
            self.trials[i] = t
        self._tick("timed", len(paths))
        return latency

    def _finish(self) -> None:
        original = self.trials[0]
        base = original.items_per_s or 0.0
        for i, t in enumerate(self.trials):
            slower = t.ok and t is not original and (t.items_per_s or 0.0) < base
            t = dataclasses.replace(t, slower=bool(slower))
            self.trials[i] = dataclasses.replace(
                t, summary=describe_trial(t, original, self.plan.judge.metric.name)
            )

    def run(self) -> None:
        plan = self.plan
        spec = cands.CandidateSpec("original", "original", {}, "the model as given")
        first = self.trial(spec, None)
        if not first.ok:
            raise RuntimeFailure(f"The original model could not be evaluated: {first.error}")
        base = self.work / "base.onnx"
        try:
            note = cands.prepare_base(plan.artifact.path, base)
        except Exception as exc:
            note = f"pre-processing failed ({first_line(exc)}); quantized the original instead"
            cands.name_nodes_file(plan.artifact.path, base)
        if note:
            plan.notes.append(f"Pre-processing: {note}.")
        for spec in plan.specs:
            if spec.method == "optimized":
                self.trial(spec, functools.partial(_copy, base))
                continue
            source = self._base_for(spec, base)
            if isinstance(source, str):
                self.skip(spec, source)
                continue
            self.bases[spec.name] = source
            self.trial(spec, self._builder(spec, source, ()))
        upgraded = [s.name for s in plan.specs if self.bases.get(s.name, base) != base]
        if upgraded:
            have = graphfix.onnx_opset(base)
            want = max(graphfix.MIN_OPSET[s.method] for s in plan.specs if s.name in upgraded)
            plan.notes.append(
                f"Upgraded the model from opset {have} to {want} (onnx's version converter) for "
                f"{', '.join(upgraded)}, which need it."
            )
        for ratio in self.prune.ratios if self.prune else ():
            spec = cands.CandidateSpec(
                f"pruned-{ratio:.0%}",
                "pruned",
                {"ratio": ratio},
                f"{ratio:.0%} of Linear neurons / Conv channels removed by L2 norm",
            )
            self.trial(spec, functools.partial(self._prune, ratio))
        self.time([t.name for t in self.trials])
        if not self.trials[0].ok:
            raise RuntimeFailure(f"The original model could not be timed: {self.trials[0].error}")
        self.fallback(base)
        self._finish()

    def _prune(self, ratio: float, dest: pathlib.Path) -> None:
        p = self.prune
        assert p is not None  # only called for pruning candidates
        prune_torch(
            p.module,
            ratio,
            p.example_inputs,
            path=dest,
            fine_tune=p.fine_tune,
            input_names=p.input_names,
            output_names=p.output_names,
            **p.export_kwargs,
        )

    def _base_for(self, spec: cands.CandidateSpec, base: pathlib.Path) -> pathlib.Path | str:
        """The model to build ``spec`` from: ``base``, or ``base`` upgraded to the opset the
        method needs; or a one-line reason to skip the candidate when the upgrade fails."""
        need = graphfix.MIN_OPSET.get(spec.method)
        have = graphfix.onnx_opset(base)
        if need is None or have >= need:
            return base
        if need not in self._upgraded:
            dest = self.work / f"base-opset{need}.onnx"
            try:
                graphfix.upgrade_opset(base, dest, need)
                self._upgraded[need] = dest
            except Exception as exc:  # the converter raises many types; the reason is reported
                self._upgraded[need] = (
                    f"needs opset {need}, the model has opset {have}, and onnx's version "
                    f"converter could not upgrade it ({first_line(exc)})"
                )
        return self._upgraded[need]

    def _builder(
        self, spec: cands.CandidateSpec, base: pathlib.Path, exclude: Sequence[str]
    ) -> Callable[[pathlib.Path], str | None]:
        sig = self.plan.artifact.signature
        fixed = default_batches(sig)

        def build(dest: pathlib.Path) -> str | None:
            return cands.build_candidate(
                spec,
                base=base,
                dest=dest,
                calibration=self.plan.calibration_inputs,
                cache_dir=self.work,
                exclude=exclude,
                batch_axes=sig.batch_axes,
                fixed_batch=fixed[0] if len(fixed) == 1 else None,
            )

        return build

    def fallback(self, base: pathlib.Path) -> None:
        """Keep the most sensitive nodes in float, one more per step, while it still pays.

        Each step is evaluated and then timed against the original in the same rounds, so
        "still faster than the original" compares like with like.
        """
        plan = self.plan
        quantized = [t for t in self.trials if t.ok and t.method in ("dynamic", "static")]
        if plan.max_fallback_steps < 1 or not quantized or any(t.passed for t in quantized):
            return
        # The smallest drop needs the fewest nodes back in float to reach the tolerance.
        start = min(quantized, key=lambda t: (t.drop if t.drop is not None else np.inf, t.name))
        spec = next(s for s in plan.specs if s.name == start.name)
        base = self.bases.get(start.name, base)
        try:
            nodes = cands.quantized_nodes(
                onnx.load(str(base)), onnx.load(str(self.paths[start.name]))
            )
            ranked = rank_nodes(
                base,
                self.paths[start.name],
                nodes,
                plan.sensitivity_inputs,
                options=plan.judge.engine_options,
            )
        except Exception as exc:
            plan.notes.append(f"Fallback skipped: ranking nodes failed ({first_line(exc)}).")
            return
        steps = min(plan.max_fallback_steps, len(ranked))
        self.total += 3 * steps  # evaluated, then timed with the original
        for k in range(1, steps + 1):
            exclude = [r.node for r in ranked[:k]]
            step_spec = cands.CandidateSpec(
                f"{start.name}+fp32x{k}",
                spec.method,
                spec.options,
                f"{spec.description}; {k} most sensitive node(s) kept in float",
            )
            trial = self.trial(
                step_spec,
                self._builder(spec, base, exclude),
                excluded=exclude,
                extra={
                    "fallback_from": start.name,
                    "fallback_step": k,
                    "sensitivity": [dataclasses.asdict(r) for r in ranked[:k]],
                },
            )
            if not trial.ok:
                continue
            # Timed beside the original, whose own row keeps the numbers from the main rounds.
            paired = self.time(["original", trial.name], update=[trial.name])
            if trial.name not in paired:
                continue  # it failed to run while timed; marked failed, on to the next step
            if trial.passed:
                plan.notes.append(f"Fallback: {trial.name} is within tolerance.")
                break
            step_tput = paired[trial.name][plan.batch].items_per_s
            base_tput = paired["original"][plan.batch].items_per_s if "original" in paired else 0.0
            if step_tput <= base_tput:
                plan.notes.append(
                    f"Fallback stopped at step {k}: {trial.name} is no longer faster than the "
                    "original."
                )
                break
        self.total = self.done
