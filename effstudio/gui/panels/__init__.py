"""One panel per sidebar section."""
