"""The seed papers' experiments as named, resumable studies."""

from .recipes import Recipe, list_recipes, load_recipe
from .runner import StudyRunner, run_study

__all__ = ["Recipe", "list_recipes", "load_recipe", "StudyRunner", "run_study"]
