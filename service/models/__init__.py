"""The domain's tables, as typed SQLAlchemy 2 models."""

from service.models.audit import AuditEvent
from service.models.groups import Group, GroupMove, GroupStatus, GroupStatusChange
from service.models.imports import ImportJob, ImportStatus
from service.models.reports import NEEDS_SECTORS, SADD_KEYS, VULNERABLE_KEYS, Report, ReportNeed
from service.models.sites import Site, SiteKind
from service.models.subscriptions import (
    Delivery,
    DeliveryStatus,
    Subscription,
    subscription_sites,
)
from service.models.summaries import Summary, SummaryStatus
from service.models.tokens import ApiToken, DashboardSession, Role, token_sites
from service.models.webhooks import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)

__all__ = [
    "NEEDS_SECTORS",
    "SADD_KEYS",
    "VULNERABLE_KEYS",
    "ApiToken",
    "AuditEvent",
    "DashboardSession",
    "Delivery",
    "DeliveryStatus",
    "Group",
    "GroupMove",
    "GroupStatus",
    "GroupStatusChange",
    "ImportJob",
    "ImportStatus",
    "Report",
    "ReportNeed",
    "Role",
    "Site",
    "SiteKind",
    "Subscription",
    "Summary",
    "SummaryStatus",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "subscription_sites",
    "token_sites",
]
