"""Pure decisions, no I/O: refund rules (``refunds``), the refund lifecycle's transition
table (``lifecycle``) and what each Antom answer means (``outcomes``)."""
