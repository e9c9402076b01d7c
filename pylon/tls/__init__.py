"""TLS: certificates of ssl objects, the SNI table, the listeners' contexts (docs/tls.md)."""
