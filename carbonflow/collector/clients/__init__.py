"""asyncio clients (masters) for each field protocol, used by the collector's pollers."""
