"""CRM (PostgreSQL) <-> MES (MySQL/MariaDB) change-data-capture bridge."""

__version__ = "0.1.0"
