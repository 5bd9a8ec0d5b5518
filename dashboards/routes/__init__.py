"""The web app's routers: each module here exports ``router``; ``create_app`` includes them all.

A module that does not exist yet (being built) is skipped; one that fails to import for
any other reason is an error.
"""

ROUTER_MODULES = (
    "dashboards.routes.auth",
    "dashboards.routes.system",
    "dashboards.routes.faq",
    "dashboards.routes.reports",
    "dashboards.routes.unanswered",
    "dashboards.routes.monitor",
    "dashboards.routes.staff",
    "dashboards.routes.phone",
)
