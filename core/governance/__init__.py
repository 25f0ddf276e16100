"""What is recorded about use: the audit log and its analytics, users, SQL stores."""
