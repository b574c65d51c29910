"""The fare service: RegisterFare, marking each fare completed or failed
(SetFareStatusFailed), the end of every fare saga and its notifications."""
