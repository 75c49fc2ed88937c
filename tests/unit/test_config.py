"""Settings: precedence, legacy names, validation messages that name variable, value and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from jozvesaz_cli.config import Settings, env_names, load_settings
from jozvesaz_cli.errors import ConfigError, ExitCode


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_load_settings_defaults(in_tmp: Path) -> None:
    settings = load_settings()
    assert settings.model_name == "base"
    assert settings.compute_type == "default"
    assert settings.device_index is None
    assert settings.memory_monitor_interval_s == 30
    assert settings.memory_monitor_ram_ratio == 0.9
    assert settings.enable_memory_monitoring is True
    assert settings.slots == 2
    assert settings.format_list == ("txt", "srt", "vtt", "json")


def test_load_settings_precedence_flag_over_env_over_dotenv(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (in_tmp / ".env").write_text(
        "TRANSCRIPTION_MODEL_NAME=small\nJOZVESAZ_SLOTS=3\nJOZVESAZ_BEAM_SIZE=2\n",
        encoding="utf-8",
    )
    assert load_settings().model_name == "small"
    monkeypatch.setenv("TRANSCRIPTION_MODEL_NAME", "tiny.en")
    monkeypatch.setenv("JOZVESAZ_SLOTS", "4")
    settings = load_settings({"slots": 1, "model_name": None})
    assert settings.model_name == "tiny.en"  # env beats .env
    assert settings.slots == 1  # flag beats env
    assert settings.beam_size == 2  # .env beats default


def test_load_settings_env_file_option(in_tmp: Path) -> None:
    other = in_tmp / "prod.env"
    other.write_text("STORAGE_ROOT=/srv/lectures\n", encoding="utf-8")
    assert load_settings(env_file=other).resolved_storage_root == Path("/srv/lectures")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(env_file=in_tmp / "missing.env")


def test_load_settings_blank_device_index_means_auto(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSCRIPTION_DEVICE_INDEX", "")
    assert load_settings().device_index is None
    monkeypatch.setenv("TRANSCRIPTION_DEVICE_INDEX", "1")
    assert load_settings().device_index == 1


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "MEMORY_MONITOR_RAM_RATIO",
            "1.7",
            "MEMORY_MONITOR_RAM_RATIO='1.7' is not valid: must be at most 1",
        ),
        (
            "MEMORY_MONITOR_INTERVAL_SECONDS",
            "0",
            "MEMORY_MONITOR_INTERVAL_SECONDS='0' is not valid: must be more than 0",
        ),
        ("TRANSCRIPTION_COMPUTE_TYPE", "int3", "TRANSCRIPTION_COMPUTE_TYPE='int3'"),
        ("MEMORY_MONITOR_INTERVAL_SECONDS", "often", "'often' is not valid: must be a number"),
        ("ENABLE_MEMORY_MONITORING", "perhaps", "'perhaps' is not valid: must be true or false"),
        ("JOZVESAZ_SLOTS", "0", "JOZVESAZ_SLOTS='0' is not valid: must be at least 1"),
        ("JOZVESAZ_SLOTS", "two", "JOZVESAZ_SLOTS='two' is not valid: must be a whole number"),
        ("JOZVESAZ_FORMATS", "txt,docx", "JOZVESAZ_FORMATS='txt,docx'"),
        ("JOZVESAZ_LANGUAGE", "english", "'english' is not valid: english is not a Whisper"),
        ("JOZVESAZ_LANGUAGE", "fa,en", "'fa,en' is not valid: expected one language code"),
        ("JOZVESAZ_ALLOWED_LANGUAGES", "fa,xx", "'fa,xx' is not valid: xx is not a Whisper"),
    ],
)
def test_load_settings_bad_value_names_variable_value_and_rule(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert expected in message
    assert "valid" in message
    assert "Input should be" not in message  # pydantic's wording is translated into a rule
    assert caught.value.exit_code == ExitCode.USAGE


def test_load_settings_compute_type_lists_allowed_values(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSCRIPTION_COMPUTE_TYPE", "int3")
    with pytest.raises(ConfigError, match="int8_float16"):
        load_settings()


def test_load_settings_flag_error_names_the_flag(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="--slots=0"):
        load_settings({"slots": 0})


def test_load_settings_unknown_prefixed_name_fails_loudly(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOZVESAZ_SLOST", "2")
    with pytest.raises(ConfigError, match="JOZVESAZ_SLOST"):
        load_settings()


def test_load_settings_unknown_name_in_dotenv_fails(in_tmp: Path) -> None:
    (in_tmp / ".env").write_text("JOZVESAZ_MODLE=small\nOTHER_TOOL=1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="JOZVESAZ_MODLE"):
        load_settings()


def test_load_settings_unknown_name_says_where_and_suggests_the_nearest(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (in_tmp / ".env").write_text("JOZVESAZ_SETLE_S=5\n", encoding="utf-8")
    monkeypatch.setenv("JOZVESAZ_SLOST", "2")
    monkeypatch.setenv("JOZVESAZ_NOTHING_LIKE_IT", "1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "JOZVESAZ_SETLE_S (set in .env, did you mean JOZVESAZ_SETTLE_S?)" in message
    assert "JOZVESAZ_SLOST (set in the environment, did you mean JOZVESAZ_SLOTS?)" in message
    assert "JOZVESAZ_NOTHING_LIKE_IT (set in the environment)" in message
    assert caught.value.exit_code == ExitCode.USAGE


def test_load_settings_flag_error_names_the_flag_as_typed(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"formats": "xyz"}, flags={"formats": "--format"})
    assert "--format='xyz' is not valid" in str(caught.value)
    assert "--formats" not in str(caught.value)


def test_load_settings_8bit_contradicts_float32(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSCRIPTION_LOAD_IN_8BIT", "1")
    monkeypatch.setenv("TRANSCRIPTION_COMPUTE_TYPE", "float32")
    with pytest.raises(ConfigError, match="contradicts"):
        load_settings()
    monkeypatch.setenv("TRANSCRIPTION_COMPUTE_TYPE", "default")
    assert load_settings().load_in_8bit is True


def test_settings_are_frozen(settings_factory) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory()
    with pytest.raises(Exception, match="frozen"):
        settings.slots = 5


def test_settings_derived_paths(settings_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory()
    root = tmp_path / "storage"
    assert settings.uploads_dir == root / "uploads"
    assert settings.results_dir == root / "results"
    assert settings.resolved_database_url == f"sqlite:///{root / 'jozvesaz.sqlite3'}"


def test_env_names_keep_legacy_spelling() -> None:
    names = env_names()
    assert names["model_name"] == "TRANSCRIPTION_MODEL_NAME"
    assert names["storage_root"] == "STORAGE_ROOT"
    assert names["memory_monitor_interval_s"] == "MEMORY_MONITOR_INTERVAL_SECONDS"
    assert names["slots"] == "JOZVESAZ_SLOTS"
    assert set(names) == set(Settings.model_fields)


def test_load_settings_language_codes_are_normalized(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOZVESAZ_LANGUAGE", " FA ")
    monkeypatch.setenv("JOZVESAZ_ALLOWED_LANGUAGES", "fa, EN,fa")
    settings = load_settings()
    assert settings.language == "fa"
    assert settings.allowed_language_list == ("fa", "en")


def test_language_codes_match_faster_whisper() -> None:
    """The list kept for light start-up is exactly the one the models accept."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from jozvesaz_cli.languages import WHISPER_LANGUAGES

    assert WHISPER_LANGUAGES == tuple(_LANGUAGE_CODES)
