"""Feature services, one per model version (fraud_v1, churn_v1, ...), from the declaration."""

from feast import FeatureService
from feature_views import VIEWS

from skewless.features import FEATURE_SERVICES

SERVICES = {
    service.name: FeatureService(
        name=service.name,
        features=[VIEWS[group.name] for group in service.groups],
        description=service.description,
        owner="ml-platform@skewless.dev",
        tags={"model": service.model_name},
    )
    for service in FEATURE_SERVICES
}

# `feast apply` finds the objects among the module's attributes.
globals().update(SERVICES)
