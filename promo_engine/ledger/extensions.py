"""Flask extensions, created once and bound to the app in `create_app`."""
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Named constraints so that Alembic migrations are reproducible on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
