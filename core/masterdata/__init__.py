"""Master data: stores, teams, customers, assets and service contracts, and the one normalisation
of their identifiers. Low in the capability order (audit < masterdata < intake): intake prefills
tickets from it. See docs/masterdata.md."""
