"""Operations: call records, live events, and the operator/staff web application."""
