"""The accounting service: CreditCustomerAccount (the fare saga's last forward step)."""
