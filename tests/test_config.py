from pathlib import Path

import pytest
from omegaconf import OmegaConf
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from pipeline.config import register, validate

CONF = str(Path(__file__).resolve().parents[1] / "conf")
EXPERIMENTS = sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml"))
TRAIN_CONFIGS = sorted(p.stem for p in (Path(CONF) / "train").glob("*.yaml"))
GROUP_CONFIGS = [(group, p.stem) for group in ("model", "dataset", "sampler")
                 for p in sorted((Path(CONF) / group).glob("*.yaml"))]

register()


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=overrides)


def test_default_config_composes_and_validates():
    cfg = _compose([])
    validate(cfg)
    assert cfg.model.name == "tiny_prop"
    assert cfg.stages[0] == "pretrain"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    validate(_compose([f"+experiment={experiment}"]))


def test_the_default_model_is_the_shipped_one_and_scratch_reproduces_its_recipe():
    from pipeline.data import resolve_path

    default, scratch = _compose([]), _compose(["model=tiny_prop_scratch"])
    assert default.model.path == "pkg://pipeline/assets/tiny_prop" and scratch.model.path == ""
    assert (resolve_path(default.model.path) / "config.json").exists()
    # the shipped model's recipe is the default pretraining, with the shipped shape
    assert default.pretrain.steps == scratch.pretrain.steps == 22680
    assert (scratch.model.hidden_size, scratch.model.intermediate_size) == (96, 288)
    quick = _compose(["model=tiny_prop_scratch", "pretrain=quick"])
    validate(quick)
    assert quick.pretrain.steps == 3000 and quick.model.path == ""
    swept = _compose(["+experiment=alpha_sweep", "model=tiny_prop_scratch", "pretrain=quick", "pretrain.steps=10"])
    validate(swept)
    assert swept.pretrain.steps == 10 and swept.model.path == ""  # the command line wins
    assert _compose(["+experiment=smoke"]).model.path == ""  # the smoke run pretrains from scratch


@pytest.mark.parametrize("train", TRAIN_CONFIGS)
def test_every_train_config_composes(train):
    cfg = _compose([f"train={train}"])
    validate(cfg)
    assert cfg.train.objective


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigCompositionException, match="hidden_sizee"):
        _compose(["model.hidden_sizee=3"])


def test_wrong_type_is_an_error_naming_the_key():
    with pytest.raises(ConfigCompositionException) as e:
        _compose(["train.lr=fast"])
    assert "train.lr" in str(e.value.__cause__) or "lr" in str(e.value)
    assert isinstance(e.value.__cause__, ValidationError)


def test_semantic_checks_name_the_key():
    cfg = _compose(["train.alpha_dpg.alpha=1.5"])
    with pytest.raises(ValueError, match=r"train\.alpha_dpg\.alpha=1\.5"):
        validate(cfg)
    with pytest.raises(ValueError, match=r"train\.grpo\.kl_coef"):
        validate(_compose(["train=grpo", "train.grpo.kl_coef=-1"]))
    with pytest.raises(ValueError, match=r"train\.objective='nope'"):
        validate(_compose(["train.objective=nope"]))
    with pytest.raises(ValueError, match="train.mode='offline'"):  # GRPO is on-policy RL
        validate(_compose(["train=grpo", "train.mode=offline"]))
    with pytest.raises(ValueError, match="train.epochs_per_round"):  # the paper preset uses each sample once
        validate(_compose(["train=alpha_dpg_paper", "train.epochs_per_round=2"]))
    with pytest.raises(ValueError, match="sampler.top_p"):  # nucleus log-probs are not the proposal's
        validate(_compose(["sampler.top_p=0.95"]))
    validate(_compose(["train=none", "sampler.top_p=0.95"]))  # no training, no importance weights
    with pytest.raises(ValueError, match="train.loss_agg"):
        validate(_compose(["train.loss_agg=sum_everything"]))
    with pytest.raises(ValueError, match="train.warmup_frac"):
        validate(_compose(["train.warmup_frac=1.0"]))
    cfg = _compose(["stages=[sample,fly]"])
    with pytest.raises(ValueError, match="fly"):
        validate(cfg)


VERIFIER_CONFIGS = sorted(p.stem for p in (Path(CONF) / "verifier").glob("*.yaml"))


@pytest.mark.parametrize("verifier", VERIFIER_CONFIGS)
def test_every_verifier_config_composes(verifier):
    cfg = _compose([f"verifier={verifier}"])
    validate(cfg)
    assert cfg.verifier.backend == verifier


def test_backend_options_come_from_the_backends_section():
    from pipeline.config import backend_options

    from lean_env.verifier import backend_option_defaults

    # every backend's section is made from its constructor's keyword options, with their defaults
    assert backend_options(_compose([]).verifier) == {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in backend_option_defaults("prop").items()}
    cfg = _compose(["verifier=lean_repl", "verifier.lean_repl.project=/p", "verifier.lean_repl.header=import Mathlib"])
    options = backend_options(cfg.verifier)
    assert options["project"] == "/p" and options["header"] == "import Mathlib"
    assert "repl" not in options  # empty means the backend's default
    assert options["allowed_axioms"] == ["propext", "Classical.choice", "Quot.sound"]
    cfg = _compose(["verifier=leandojo", "verifier.leandojo.repo=https://x", "verifier.leandojo.commit=abc"])
    assert backend_options(cfg.verifier) == {"repo": "https://x", "commit": "abc", "additional_imports": [],
                                             "startup_timeout": 600.0}


def test_a_new_backend_brings_its_options_to_the_config(monkeypatch):
    """Registering a backend is all it takes: its constructor's keyword options become the typed
    section `verifier.<name>.*` (unknown keys and wrong types refused), handed back to its constructor."""

    from lean_env import verifier as verifier_mod
    from pipeline import config as config_mod

    class EchoBackend(verifier_mod.Backend):
        name = "echo"
        version = "1"

        def __init__(self, *, banner: str = "hi", retries: int = 2, tags: tuple = ("a",)):
            self.options = {"banner": banner, "retries": retries, "tags": list(tags)}

        def verify(self, items, **kwargs):
            return []

    monkeypatch.setitem(verifier_mod._REGISTRY, "echo", EchoBackend)
    section = config_mod._verifier_config()
    cfg = OmegaConf.merge(OmegaConf.structured(section), {"backend": "echo", "echo": {"retries": 5}})
    assert config_mod.backend_options(cfg) == {"banner": "hi", "retries": 5, "tags": ["a"]}
    assert verifier_mod.get_backend("echo", **config_mod.backend_options(cfg)).options["retries"] == 5
    with pytest.raises(Exception, match="retries"):
        OmegaConf.merge(OmegaConf.structured(section), {"echo": {"retries": "many"}})
    with pytest.raises(Exception, match="nonsense"):
        OmegaConf.merge(OmegaConf.structured(section), {"echo": {"nonsense": 1}})


def test_verifier_sections_are_typed():
    with pytest.raises(ConfigCompositionException):
        _compose(["verifier=lean_repl", "verifier.lean_repl.max_items_per_worker=many"])
    with pytest.raises(ConfigCompositionException):
        _compose(["verifier=lean_repl", "verifier.lean_repl.nonsense=1"])
    with pytest.raises(ValueError, match="verifier.timeout"):
        validate(_compose(["verifier.timeout=0"]))


@pytest.mark.parametrize("group,name", GROUP_CONFIGS)
def test_every_model_dataset_and_sampler_config_composes(group, name):
    # The Lean provers prompt with a Lean header, which the embedded prop dataset does not have.
    lean_model = group == "model" and name != "tiny_prop"
    cfg = _compose([f"{group}={name}"] + (["dataset=minif2f_test"] if lean_model else []))
    validate(cfg)
    assert cfg[group].name == name if group != "sampler" else cfg.sampler.name in ("hf", "vllm", "power")


def test_prompt_style_is_validated():
    cfg = _compose(["model=kimina_prover_distill_1_7b", "dataset=minif2f_test"])
    validate(cfg)
    assert cfg.model.prompt_style == "kimina_prover" and "maxHeartbeats 0" in cfg.dataset.header
    with pytest.raises(ValueError, match="model.prompt_style"):
        validate(_compose(["model.prompt_style=chatgpt"]))
    with pytest.raises(ValueError, match="dataset.header"):  # a Lean prover on the prop benchmark
        validate(_compose(["model=deepseek_prover_v15_rl"]))


def test_fsdp_options_are_validated():
    validate(_compose(["train.strategy=fsdp", "train.precision=bf16", "sampler=vllm", "train.grad_accum=4"]))
    with pytest.raises(ValueError, match="train.strategy"):
        validate(_compose(["train.strategy=deepspeed"]))
    with pytest.raises(ValueError, match="FSDP options"):
        validate(_compose(["train.precision=bf16"]))
    with pytest.raises(ValueError, match="needs sampler=vllm"):
        validate(_compose(["train.strategy=fsdp", "train.mode=online"]))


METHODS = sorted(p.stem for p in (Path(CONF) / "method").glob("*.yaml"))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_composes_in_the_sweep(method):
    validate(_compose(["+experiment=alpha_sweep", f"+method={method}"]))


DPG_METHODS = [m for m in METHODS if m.startswith("dpg_a")]


def _alpha_in_name(method: str) -> float:
    """dpg_a0 → 0, dpg_a025 → 0.25, dpg_a05 → 0.5, dpg_a099 → 0.99, dpg_a1 → 1: the digits after
    'dpg_a' are α's decimal digits after a leading '0.' (a lone '0' or '1' is α itself)."""
    digits = method.removeprefix("dpg_a")
    return float(digits) if digits in ("0", "1") else float("0." + digits[1:])


def test_dpg_methods_train_and_are_labelled_with_the_alpha_their_name_says():
    from pipeline.config import method_label

    assert len(DPG_METHODS) == 7
    for method in DPG_METHODS:
        cfg = _compose(["+experiment=alpha_sweep", f"+method={method}"])
        alpha = _alpha_in_name(method)
        assert cfg.train.objective == "alpha_dpg" and cfg.train.alpha_dpg.alpha == alpha, method
        assert method_label(cfg) == f"α-DPG α={alpha:g}", method


def test_the_label_follows_the_alpha_trained_with_or_the_contradiction_is_refused():
    """issue 17 item 9: an α override after +method=dpg_a099 used to train at 0.3 and say 0.99."""
    from pipeline.config import method_label

    cfg = _compose(["+experiment=alpha_sweep", "+method=dpg_a099", "train.alpha_dpg.alpha=0.3"])
    assert cfg.train.alpha_dpg.alpha == 0.3 and method_label(cfg) == "α-DPG α=0.3"
    # `method` is set in a YAML file (on the command line `method=` names the config group)
    named = _compose(["+method=dpg_a05"])
    named.method = "α-DPG (mine)"
    assert method_label(named) == "α-DPG (mine) α=0.5"
    named.method = "α-DPG α=0.99"
    with pytest.raises(ValueError, match="states α itself"):
        validate(named)
    paper = _compose(["+method=alpha_dpg_paper", "train.alpha_dpg_paper.alpha=0.5"])
    assert method_label(paper) == "α-DPG (paper estimator) α=0.5"
    assert method_label(_compose(["+method=grpo_kl"])) == "GRPO (β=0.5)"
    assert method_label(_compose(["+method=grpo_kl", "train.grpo.kl_coef=0.1"])) == "GRPO (β=0.1)"
    assert method_label(_compose(["+method=grpo_authors"])) == "Dr. GRPO no KL"
    assert method_label(_compose(["+method=power_g2", "sampler.gamma=4"])) == "power γ=4"


def test_the_sweep_puts_every_method_on_one_loss_scale_and_includes_the_authors_rl_baseline():
    sweep = (Path(CONF) / "experiment" / "alpha_sweep.yaml").read_text()
    methods = sweep.split("+method:")[1].split("\n")[0].strip().split(",")
    assert "grpo_authors" in methods
    scales = {(c.train.loss_agg, c.train.loss_norm_tokens)
              for c in (_compose(["+experiment=alpha_sweep", f"+method={m}"]) for m in methods)}
    assert scales == {("seq_mean_token_sum_norm", 1024)}


def test_grpo_authors_is_the_alpha_dpg_authors_rl_sh():
    g = _compose(["+method=grpo_authors"]).train
    assert g.objective == "grpo" and g.mode == "online" and g.warmup_frac == 0.0
    assert (g.grpo.scale_by_std, g.grpo.std_unbiased, g.grpo.kl_coef, g.grpo.kl_clamp, g.grpo.clip_eps) == \
        (False, True, 0.0, 10.0, 0.2)
    assert (g.loss_agg, g.loss_norm_tokens) == ("seq_mean_token_sum_norm", 1024)


def test_one_route_to_the_paper_preset():
    from pipeline import objectives

    p = _compose(["+method=alpha_dpg_paper"]).train
    assert p.objective == "alpha_dpg_paper" and p.warmup_frac == 0.05
    spec = objectives.get_objective("alpha_dpg_paper")
    assert spec.fresh_rollouts_per_step and spec.modes == ("online",)
    assert "preset" not in objectives.option_names("alpha_dpg")  # no second route through alpha_dpg


def test_the_train_key_holds_only_the_chosen_objectives_section():
    from pipeline.stages.train import train_key

    key = train_key(_compose(["+method=dpg_a05"]).train)
    assert key["alpha_dpg"]["alpha"] == 0.5 and "grpo" not in key and "dph_rl" not in key
    assert train_key(_compose(["+method=dpg_a05", "train.grpo.kl_coef=0.3"]).train) == key


def test_power_method_is_an_untrained_run_with_the_power_sampler():
    from pipeline.config import NO_TRAINING, method_label, plain_sampler, power_sampling

    cfg = _compose(["+experiment=alpha_sweep", "+method=power_g2"])
    assert cfg.train.objective == NO_TRAINING and power_sampling(cfg)
    assert (cfg.sampler.gamma, cfg.sampler.proposal) == (2.0, "hf")
    assert cfg.sampler.samples_per_prompt == 8  # the experiment's settings still apply on top
    assert method_label(cfg) == "power γ=2" and plain_sampler(cfg.sampler) == "hf"
    plain = _compose([])
    assert not power_sampling(plain) and plain_sampler(plain.sampler) == "hf"
    assert plain.sampler.gamma == 4.0  # the power fields exist, unused, in every sampler config


@pytest.mark.parametrize("override", ["sampler.gamma=0", "sampler.block_size=0", "sampler.mcmc_steps=-1",
                                      "sampler.proposal_temperature=-1", "sampler.proposal=power"])
def test_power_settings_are_checked(override):
    cfg = _compose(["sampler=power", override])
    with pytest.raises(ValueError, match="sampler"):
        validate(cfg)


def test_eval_ks_follow_samples_per_prompt_unless_given():
    from pipeline.config import eval_ks

    assert eval_ks(_compose([]).eval) == [1, 2, 4, 8, 16, 32, 64, 128, 256]  # the default n = 256
    small = _compose(["eval.samples_per_prompt=20"])
    validate(small)  # no eval.ks override needed
    assert eval_ks(small.eval) == [1, 2, 4, 8, 16, 20]
    assert eval_ks(_compose(["eval.samples_per_prompt=1"]).eval) == [1]
    given = _compose(["eval.samples_per_prompt=64", "eval.ks=[10,1,10]"])
    validate(given)
    assert eval_ks(given.eval) == [1, 10]  # an explicit list is kept (sorted, without repeats)
    with pytest.raises(ValueError, match=r"eval.ks \[128\]"):
        validate(_compose(["eval.samples_per_prompt=64", "eval.ks=[1,128]"]))
