"""Names of the study user attributes nnsearch stores with each Optuna study.

The search stage writes them; readers of the store (which know neither Optuna
nor the search stage) read them with plain SQL.
"""

#: The study's configuration (`nnsearch.search.config.StudyConfig.to_dict`).
CONFIG_ATTR = "config"
#: The study's search space (`nnsearch.model.space.SearchSpace.to_mapping`).
SPACE_ATTR = "space"
