module eventhost.local/payment

go 1.24
