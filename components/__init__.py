"""Pure, testable building blocks of xstilts. Only `components.tracking` talks to MLflow."""
