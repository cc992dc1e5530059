"""The imagery resource: sources by configuration, switched by environment, none by default."""

import pytest

from flywheel_core.imagery.sources.synthetic import SyntheticSource
from flywheel_core.imagery.sources.types import SourceError
from flywheel_resources.imagery import ImageryResource

ENV = ("FLYWHEEL_VHR_SOURCE", "FLYWHEEL_MSI_SOURCE", "FLYWHEEL_VHR_ROOT", "FLYWHEEL_MSI_ROOT")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path))
    return monkeypatch


def test_the_class_has_no_source_by_default():
    fields = ImageryResource.model_fields
    assert fields["vhr_source"].is_required() and fields["msi_source"].is_required()


def test_production_without_settings_names_the_variable(clean_env):
    clean_env.setenv("FLYWHEEL_DEPLOYMENT", "production")
    resource = ImageryResource.from_env()
    with pytest.raises(SourceError, match="FLYWHEEL_VHR_SOURCE"):
        resource.vhr()
    assert resource.truth_path == ""


def test_local_deployment_falls_back_to_the_synthetic_world(clean_env, tmp_path):
    clean_env.delenv("FLYWHEEL_DEPLOYMENT", raising=False)
    resource = ImageryResource.from_env()
    source = resource.msi()
    assert isinstance(source, SyntheticSource) and source.kind == "msi"
    assert source.path == tmp_path / "world" / "catalog.json"
    assert resource.truth_path.endswith("truth.parquet")


def test_sources_and_options_come_from_the_environment(clean_env, tmp_path):
    clean_env.setenv("FLYWHEEL_VHR_SOURCE", "local")
    clean_env.setenv("FLYWHEEL_VHR_ROOT", str(tmp_path))
    clean_env.setenv("FLYWHEEL_VHR_OPTIONS", '{"dn_scale": 0.01}')
    clean_env.setenv("FLYWHEEL_MSI_SOURCE", "stac-api")
    resource = ImageryResource.from_env()
    vhr = resource.vhr()
    assert vhr.name == "local" and vhr.options == {"dn_scale": 0.01}
    assert resource.truth_path == ""  # the hidden truth belongs to the synthetic world only
    broken = resource.model_copy(update={"vhr_options": "{dn_scale"})
    with pytest.raises(SourceError, match="not JSON"):
        broken.vhr()
