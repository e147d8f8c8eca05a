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


def test_pretrain_long_sets_steps_and_shape_and_the_command_line_still_wins():
    default, long = _compose([]), _compose(["pretrain=long"])
    validate(long)
    assert long.pretrain.steps == 22680 and default.pretrain.steps == 3000
    assert (long.model.hidden_size, long.model.intermediate_size) == (96, 288)
    assert (default.model.hidden_size, default.model.intermediate_size) == (128, 384)
    swept = _compose(["+experiment=alpha_sweep", "pretrain=long", "model.hidden_size=128"])
    validate(swept)
    assert swept.model.hidden_size == 128 and swept.pretrain.steps == 22680
    assert swept.dataset.eval_limit == 50  # the experiment's own settings survive


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
    cfg = _compose(["train.alpha=1.5"])
    with pytest.raises(ValueError, match="train.alpha"):
        validate(cfg)
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
