"""Billing: plans and the tiered rate, the usage ledger, quota reservations (Stripe sync lives beside them)."""

from iam_cluster.billing.plans import PLANS, Plan, billable_minutes, plan_for, tiered_cost

__all__ = ["PLANS", "Plan", "billable_minutes", "plan_for", "tiered_cost"]
