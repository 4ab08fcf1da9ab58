"""DATABASE_URL in libpq's multi-host form (a Patroni cluster) reaches psycopg2 intact."""

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from allocation.config import settings_from


def test_a_multi_host_url_becomes_sqlalchemys_host_list() -> None:
    settings = settings_from(
        database_url="postgresql://u:p@h1:5432,h2:5433/d?target_session_attrs=read-write"
    )
    assert settings.sqlalchemy_url == (
        "postgresql+psycopg2://u:p@/d?host=h1:5432&host=h2:5433&target_session_attrs=read-write"
    )
    connect = create_engine(settings.sqlalchemy_url).dialect.create_connect_args
    _, params = connect(make_url(settings.sqlalchemy_url))
    assert (params["host"], params["port"]) == ("h1,h2", "5432,5433")
    assert params["target_session_attrs"] == "read-write"
