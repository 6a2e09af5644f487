"""MLflow model registry (aliases, no stages) and the champion/challenger promotion gate.

Three registered models with stable names: the Keras model, its ONNX export and, when it
earns it, the INT8 ONNX variant. Every new version gets alias `challenger`; the gate moves
`champion` on the ONNX model and on its linked Keras/INT8 versions together, and takes it off
the INT8 model when the new champion has no INT8 variant.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from sign_mlops.sign_model.gate import GatePolicy  # noqa: F401  (re-exported: registry.GatePolicy)

log = logging.getLogger(__name__)

KERAS_MODEL = "sign-mnist-keras"
ONNX_MODEL = "sign-mnist-onnx"
INT8_MODEL = "sign-mnist-onnx-int8"
CHALLENGER = "challenger"
CHAMPION = "champion"


def register(model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    """Register a logged model as a new version, tag it and give it alias `challenger`."""
    client = MlflowClient()
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..." lines
        version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    log.info("registered %s version %s as %s", name, version.version, CHALLENGER)
    return version


def register_once(model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    """The version of `name` already registered for this run (tag run_id), else a new one."""
    client = MlflowClient()
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get("run_id") == str(tags["run_id"]):
            client.set_registered_model_alias(name, CHALLENGER, version.version)
            tag_version(name, version.version, tags)
            log.info("%s version %s already registered for run %s", name, version.version, tags["run_id"])
            return version
    return register(model_uri, name, tags)


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


MODEL_DESCRIPTIONS = {
    KERAS_MODEL: "Sign Language MNIST classifier (24 letters, no J/Z), Keras. Input: float32 (N, 28, 28, 1) raw "
                 "0-255 grayscale pixels (Rescaling inside the model). Output: 24 class probabilities.",
    ONNX_MODEL: "The Keras model exported to ONNX (tf2onnx) with parity proven on the test split; what the batch "
                "scorer loads (`sign-mlops score --model models:/sign-mnist-onnx@champion`). Input `pixels`: float32 "
                "(N, 28, 28, 1) raw 0-255; output `probabilities` (N, 24); label map and drift reference in the "
                "ONNX metadata.",
    INT8_MODEL: "Static INT8 (QDQ) variant of the ONNX model, registered only when it is faster on the scorer "
                "and within the accuracy and robustness bounds. Same input and output as the ONNX model.",
}


def model_card(tags: dict[str, str], architecture: str) -> str:
    """A short version description: what it is, what data, how good, what goes in."""
    def pct(key: str) -> str:
        value = tags.get(key)
        return f"{100 * float(value):.2f} %" if value else "n/a"  # absent or empty

    lines = [f"**{architecture}**; MLflow run `{tags.get('run_id')}`.",
             f"Training data sha256 `{str(tags.get('train_sha256', ''))[:12]}`.",
             f"Test accuracy {pct('test_accuracy')}; robustness (moderate shifts) mean {pct('robust_mean')}, "
             f"worst kind {tags.get('robust_worst_kind', 'n/a')} {pct('robust_worst')}.",
             "Input: float32 (N, 28, 28, 1) raw 0-255 pixels; output: 24 probabilities (letters A-Y without J).",
             "Promotion: decided by the gate (see the promotion_decision and promotion_reasons tags)."]
    return "\n\n".join(lines)


def describe(name: str, version: str, card: str) -> None:
    """The registered model's fixed description (once) and this version's model card."""
    client = MlflowClient()
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_DESCRIPTIONS.get(name, ""))
    client.update_model_version(name, version, description=card)


def version_by_alias(name: str, alias: str) -> ModelVersion | None:
    """The version holding an alias, or None when the alias (or model) does not exist."""
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass
class Decision:
    model: str
    challenger_version: str
    champion_version: str | None
    promoted: bool
    forced: bool
    reasons: list[str] = field(default_factory=list)
    decided_at: str = ""
    decided_by: str = ""

    def summary(self) -> str:
        verdict = "PROMOTED to champion" if self.promoted else "NOT promoted"
        head = f"{self.model} v{self.challenger_version}: {verdict}"
        return head + "".join(f"\n  - {r}" for r in self.reasons)


def _float_tag(version: ModelVersion, key: str) -> float | None:
    value = version.tags.get(key)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def judge(challenger: ModelVersion, champion: ModelVersion | None, policy: GatePolicy) -> list[tuple[bool, str]]:
    """Each gate check as (passed, reason)."""
    checks = [
        (challenger.tags.get("validation_passed") == "true", f"data validation passed: {challenger.tags.get('validation_passed', 'unknown')}"),
        (challenger.tags.get("parity_passed") == "true", f"ONNX parity passed: {challenger.tags.get('parity_passed', 'unknown')}"),
    ]
    accuracy = _float_tag(challenger, "test_accuracy")
    if accuracy is None:
        return checks + [(False, "challenger has no test_accuracy tag")]
    checks.append((accuracy >= policy.accuracy_floor, f"test accuracy {accuracy:.4f} vs floor {policy.accuracy_floor:.4f}"
                   + ("" if accuracy >= policy.accuracy_floor or champion is not None else _first_model_way_out(accuracy))))
    if champion is None:
        checks.append((True, "no current champion: the first model over the floor becomes champion"))
    else:
        best = _float_tag(champion, "test_accuracy") or 0.0
        checks.append((accuracy >= best - policy.tolerance,
                       f"test accuracy {accuracy:.4f} vs champion v{champion.version} {best:.4f} "
                       f"(tolerance {policy.tolerance})"))
    return checks + judge_robustness(challenger, champion, policy)


def _first_model_way_out(accuracy: float) -> str:
    """What to do when the first model is under the floor (e.g. the smoke preset on real data):
    there is no champion to score with until one clears it."""
    floor = max(math.floor(accuracy * 100) / 100, 0.0)
    return (f"; there is no champion yet: train the default preset ('sign-mlops train'), or accept this model "
            f"with a lower floor ('sign-mlops promote --accuracy-floor {floor:.2f}')")


def judge_robustness(challenger: ModelVersion, champion: ModelVersion | None,
                     policy: GatePolicy) -> list[tuple[bool, str]]:
    """Mean and worst-kind accuracy under the robustness suite: over the floors, and not worse
    than the champion's beyond the tolerance (a champion from before the suite has no record)."""
    mean, worst = _float_tag(challenger, "robust_mean"), _float_tag(challenger, "robust_worst")
    if mean is None or worst is None:
        return [(False, "challenger has no robustness record (robust_mean/robust_worst tags); "
                        "retrain it with this version of sign-mlops")]
    kind = challenger.tags.get("robust_worst_kind", "?")
    checks = [(mean >= policy.robust_mean_floor, f"robustness mean {mean:.4f} vs floor {policy.robust_mean_floor:.4f}"),
              (worst >= policy.robust_worst_floor,
               f"robustness worst kind ({kind}) {worst:.4f} vs floor {policy.robust_worst_floor:.4f}")]
    if champion is None:
        return checks
    best_mean, best_worst = _float_tag(champion, "robust_mean"), _float_tag(champion, "robust_worst")
    if best_mean is None or best_worst is None:
        return checks + [(True, f"champion v{champion.version} has no robustness record: nothing to compare")]
    return checks + [
        (mean >= best_mean - policy.robust_tolerance,
         f"robustness mean {mean:.4f} vs champion v{champion.version} {best_mean:.4f} (tolerance {policy.robust_tolerance})"),
        (worst >= best_worst - policy.robust_tolerance,
         f"robustness worst kind {worst:.4f} vs champion v{champion.version} "
         f"{best_worst:.4f} ({champion.tags.get('robust_worst_kind', '?')}; tolerance {policy.robust_tolerance})"),
    ]


def _linked_versions(version: ModelVersion) -> list[tuple[str, str]]:
    links = [(ONNX_MODEL, version.version)]
    for tag, name in (("keras_version", KERAS_MODEL), ("int8_version", INT8_MODEL)):
        if version.tags.get(tag):
            links.append((name, version.tags[tag]))
    return links


def _move_champion(challenger: ModelVersion) -> None:
    """`champion` onto the challenger and its linked versions. A linked model it has no version
    of (INT8 is registered only when it pays) loses the alias, so that name never goes on
    serving an earlier champion's model."""
    client = MlflowClient()
    linked = dict(_linked_versions(challenger))
    for name in (ONNX_MODEL, KERAS_MODEL, INT8_MODEL):
        if name in linked:
            client.set_registered_model_alias(name, CHAMPION, linked[name])
        elif version_by_alias(name, CHAMPION) is not None:
            client.delete_registered_model_alias(name, CHAMPION)
            log.warning("%s has no version for champion %s v%s: its alias %s is removed, so it no longer serves "
                        "the previous champion", name, ONNX_MODEL, challenger.version, CHAMPION)


def promote(policy: GatePolicy = GatePolicy(), force: bool = False, why: str | None = None,
            model: str = ONNX_MODEL) -> Decision:
    """Decide whether the ONNX challenger becomes champion; record and return the decision."""
    challenger = version_by_alias(model, CHALLENGER)
    if challenger is None:
        raise LookupError(f"No '{CHALLENGER}' version of {model!r} in the registry at {mlflow.get_tracking_uri()}; "
                          "run 'sign-mlops train' first.")
    champion = version_by_alias(model, CHAMPION)
    decision = Decision(model, str(challenger.version), str(champion.version) if champion else None, False, force,
                        decided_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), decided_by=getpass.getuser())
    if champion is not None and champion.version == challenger.version:
        decision.reasons = [f"v{challenger.version} is already champion"]
        decision.promoted = True
        return decision
    checks = judge(challenger, champion, policy)
    decision.reasons = [("PASS " if ok else "FAIL ") + reason for ok, reason in checks]
    decision.promoted = all(ok for ok, _ in checks)
    if force and not decision.promoted:
        if not why:
            raise ValueError("A forced promotion needs a reason (--why).")
        decision.promoted = True
        decision.reasons.append(f"FORCED by {decision.decided_by}: {why}")
    if decision.promoted:
        _move_champion(challenger)
    record_decision(decision, challenger)
    return decision


def pin_champion(version: str, why: str, model: str = ONNX_MODEL) -> Decision:
    """Make version N the champion without the gate -- a rollback, or a pin -- recorded like every
    gate decision (tags on the version and its run, a decision file); the Keras and INT8 names
    follow it (an INT8 champion only where version N has an INT8 variant)."""
    if not why.strip():
        raise ValueError("Moving the champion by hand needs a reason (--why); it is recorded on the version.")
    try:
        target = MlflowClient().get_model_version(model, str(version))
    except MlflowException:
        raise LookupError(f"{model} has no version {version} in the registry at {mlflow.get_tracking_uri()}; "
                          "'sign-mlops models' lists the versions.") from None
    champion = version_by_alias(model, CHAMPION)
    before = str(champion.version) if champion else None
    decision = Decision(model, str(target.version), before, True, True,
                        decided_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), decided_by=getpass.getuser())
    if before == decision.challenger_version:
        decision.reasons = [f"v{before} is already champion; recorded again: {why}"]
    else:
        was = f"v{before}" if before else "none"
        decision.reasons = [f"PINNED by {decision.decided_by} (champion was {was}): {why}"]
    _move_champion(target)
    record_decision(decision, target, verdict="pinned")
    return decision


def record_decision(decision: Decision, challenger: ModelVersion, verdict: str | None = None) -> None:
    """Tags on the version and its run, plus promotion/decision_v<N>-<when>.json in the run."""
    verdict = verdict or ("promoted" if decision.promoted else "rejected")
    reasons = " | ".join(decision.reasons)[:4900]
    tag_version(decision.model, decision.challenger_version,
                {"promotion_decision": verdict, "promotion_reasons": reasons, "promotion_forced": str(decision.forced).lower(),
                 "promotion_decided_at": decision.decided_at, "promotion_decided_by": decision.decided_by})
    client = MlflowClient()
    if challenger.run_id:
        client.set_tag(challenger.run_id, "promotion_decision", verdict)
        client.set_tag(challenger.run_id, "promotion_reasons", reasons)
        when = decision.decided_at.replace(":", "")
        client.log_text(challenger.run_id, json.dumps({**asdict(decision), "verdict": verdict}, indent=2),
                        f"promotion/decision_v{decision.challenger_version}-{when}.json")


def champion_matches(train_sha256: str, config: dict, model: str = ONNX_MODEL) -> tuple[bool, str]:
    """Whether the current champion was trained on the same data digest with the same config."""
    champion = version_by_alias(model, CHAMPION)
    if champion is None:
        return False, "no champion yet"
    if champion.tags.get("train_sha256") != train_sha256:
        return False, f"training data changed since champion v{champion.version}"
    run_id = champion.tags.get("run_id") or champion.run_id
    params = mlflow.get_run(run_id).data.params if run_id else {}
    changed = sorted(k for k, v in config.items() if params.get(k) != str(v))
    if changed:
        return False, f"training config differs from champion v{champion.version} in {changed}"
    return True, f"data digest {train_sha256[:12]} and config equal champion v{champion.version}'s"


@dataclass(frozen=True)
class VersionRow:
    """One registered version as `sign-mlops models` shows it: what, how good, where it serves, why."""

    model: str
    version: str
    aliases: tuple[str, ...]
    created: str  # UTC, seconds
    run_id: str
    test_accuracy: float | None
    robust_mean: float | None
    robust_worst: float | None
    robust_worst_kind: str
    int8_version: str  # the linked INT8 variant ("" = none registered: it did not pay)
    decision: str  # promoted | rejected | pinned | "" (not judged yet)
    decided_at: str
    reasons: str


def list_versions(model: str = ONNX_MODEL) -> list[VersionRow]:
    """Every version of a registered model, newest first; LookupError when the model is unknown."""
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{model}'")
    if not versions:
        raise LookupError(f"No registered model {model!r} in the registry at {mlflow.get_tracking_uri()}; "
                          "train one first ('sign-mlops train'), or check MLFLOW_TRACKING_URI.")
    aliases: dict[str, list[str]] = {}  # search results carry no aliases; the registered model does
    for alias, number in (client.get_registered_model(model).aliases or {}).items():
        aliases.setdefault(str(number), []).append(alias)
    rows = [_version_row(model, v, tuple(sorted(aliases.get(str(v.version), [])))) for v in versions]
    return sorted(rows, key=lambda row: int(row.version), reverse=True)


def _version_row(model: str, version: ModelVersion, aliases: tuple[str, ...]) -> VersionRow:
    created = datetime.fromtimestamp((version.creation_timestamp or 0) / 1000, timezone.utc)
    tags = version.tags
    return VersionRow(model, str(version.version), aliases,
                      created.isoformat(timespec="seconds"), tags.get("run_id") or version.run_id or "",
                      _float_tag(version, "test_accuracy"), _float_tag(version, "robust_mean"),
                      _float_tag(version, "robust_worst"), tags.get("robust_worst_kind", ""),
                      tags.get("int8_version", ""), tags.get("promotion_decision", ""),
                      tags.get("promotion_decided_at", ""), tags.get("promotion_reasons", ""))
