from pathlib import Path

import pytest

from sconeflow.config import load_settings
from sconeflow.errors import ConfigError


def test_defaults_use_embedded_store_under_home(tmp_path: Path) -> None:
    s = load_settings(env={}, home=tmp_path / "h")
    assert s.home == (tmp_path / "h").resolve()
    assert s.store_uri == (tmp_path / "h" / "store").resolve().as_uri()
    assert s.bucket == "sconeflow"
    assert not s.is_s3
    assert s.db_path == s.home / "sconeflow.db"


def test_environment_is_read_and_explicit_values_win(tmp_path: Path) -> None:
    env = {"SCONEFLOW_HOME": str(tmp_path / "e"), "SCONEFLOW_BUCKET": "from-env"}
    assert load_settings(env=env).home == (tmp_path / "e").resolve()
    assert load_settings(env=env).bucket == "from-env"
    assert load_settings(env=env, bucket="explicit").bucket == "explicit"


def test_s3_uri_honours_aws_endpoint_url_and_names_bucket(tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    s = load_settings(env=env, home=tmp_path, store_uri="s3://my-bucket")
    assert s.is_s3 and s.bucket == "my-bucket"
    assert s.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("kwargs", "env", "named"),
    [
        ({"bucket": "Bad_Bucket"}, {}, "bucket"),
        ({"bucket": "ab"}, {}, "bucket"),
        ({"store_uri": "ftp://x"}, {}, "store"),
        ({"store_uri": "file://relative/path"}, {}, "store"),
        ({"store_uri": "s3://"}, {"AWS_ENDPOINT_URL": "localhost:9000"}, "AWS_ENDPOINT_URL"),
    ],
)
def test_invalid_values_are_rejected_naming_the_setting(
    tmp_path: Path, kwargs: dict[str, str], env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{named}:"):
        load_settings(env=env, home=tmp_path, **kwargs)


def test_home_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"^home:"):
        load_settings(env={}, home=f)
