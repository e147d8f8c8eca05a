"""The shipped base model (model=tiny_prop, pipeline/assets/tiny_prop) still proves, through the normal
path: the config's pkg:// path, the pretrain stage's external-model check, from_pretrained, the hf
sampler, the verifier and the evaluate stage. A broken loader, tokenizer, prompt format or length
budget drops pass@1 far below the band.

The band: `python -m pipeline 'stages=[evaluate_base]' dataset.eval_limit=24 eval.samples_per_prompt=16`
printed pass@1 = 0.359 on 2026-12-06 (the whole eval split: 0.341, PROVENANCE.md). The band is
±0.12 around it: wide enough for another sampler implementation's draws of the same distribution
(its standard error on these 384 samples is ~0.05), far from what a broken path gives (near 0)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import register
from pipeline.context import build_context

ROOT = Path(__file__).resolve().parents[1]
MEASURED_PASS_AT_1 = 0.359
BAND = 0.12


def _cfg(tmp_path, *overrides):
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", "logger.backend=none",
                                                         "progress=false", *overrides])


def test_the_shipped_model_proves_a_fixed_eval_subset_within_its_band(tmp_path):
    cfg = _cfg(tmp_path, "dataset.eval_limit=24", "eval.samples_per_prompt=16", "threads=1")
    ctx = build_context(cfg, tmp_path / "run")
    art = ctx.stage("evaluate_base")
    summary = art.meta["summary"]
    assert summary["theorems"] == 24 and summary["samples_per_theorem"] == 16
    assert abs(summary["pass@1"] - MEASURED_PASS_AT_1) <= BAND, summary
    pretrain = ctx.stage("pretrain")
    assert pretrain.meta["external_path"].endswith("pipeline/assets/tiny_prop")


def test_every_theorem_has_a_proof_within_the_length_budget_in_the_shipped_tokenizer():
    """The sampler's budget (sampler.max_new_tokens) and the generator's were chosen together: every
    theorem of every split has some proof style that fits it, EOS included."""
    from transformers import AutoTokenizer

    from lean_env.propgen import render_all
    from pipeline.data import load_theorems, resolve_path
    from pipeline.model import encode_completions

    cfg = _cfg(Path("/tmp"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(cfg.model.path))
    budget = int(cfg.sampler.max_new_tokens)
    for path in (cfg.dataset.train_path, cfg.dataset.eval_path, "pkg://lean_env/data/prop_valid.jsonl"):
        theorems = load_theorems(path)
        shortest = []
        for statement in theorems["statement"]:
            proofs = [p[len(cfg.dataset.proof_prefix):] for p in render_all(statement).values()]
            shortest.append(min(len(ids) for ids in encode_completions(tokenizer, proofs)))
        too_long = [t for t, n in zip(theorems["id"], shortest) if n > budget]
        assert not too_long, f"{path}: {len(too_long)} theorems have no proof within {budget} tokens: {too_long[:5]}"
        assert max(shortest) >= budget - 2  # the budget is tight: the longest shortest proof nearly fills it


@pytest.mark.parametrize("text", ["theorem t (p q : Prop) : p ∧ q → q ∧ p := by", "  intro ⟨h1, h2⟩; exact ⟨h2, h1⟩"])
def test_the_shipped_tokenizer_round_trips(text):
    from transformers import AutoTokenizer

    from pipeline.data import resolve_path

    tok = AutoTokenizer.from_pretrained(resolve_path("pkg://pipeline/assets/tiny_prop"))
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_a_model_folder_is_keyed_by_its_weights_and_tokenizer_not_its_documentation(tmp_path):
    """A new provenance note or training log beside the shipped model must not invalidate every
    artifact computed from it; a changed weight or tokenizer file must."""
    import shutil

    from pipeline.stages.pretrain import folder_hash

    folder = tmp_path / "model"
    shutil.copytree(Path(__file__).parents[1] / "pipeline" / "assets" / "tiny_prop", folder)
    key = folder_hash(folder)
    (folder / "PROVENANCE.md").write_text("rewritten\n")
    (folder / "train_log.csv").write_text("step,loss\n")
    (folder / "notes.yaml").write_text("a: 1\n")
    assert folder_hash(folder) == key
    tokenizer = next(p for p in folder.iterdir() if p.name.startswith("tokenizer") and p.suffix == ".json")
    tokenizer.write_text(tokenizer.read_text() + " ")
    assert folder_hash(folder) != key
