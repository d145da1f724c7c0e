"""Service B: bill each order placed in service A, as it arrives through RabbitMQ.

    RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/ python billing_service.py [COUNT]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from svrnty_events import Event, EventStreaming


class OrderPlaced(Event):  # the same type name and fields as service A's event
    order_id: int
    total: float


streaming = EventStreaming.from_toml(Path(__file__).with_name("billing.toml"))
streaming.register_event_types(OrderPlaced)


async def main(count: int | None) -> None:
    async with streaming.run() as host:
        print("billing is listening", flush=True)
        billed = 0
        async with host.subscribe("billing", "billing-1") as deliveries:
            async for delivery in deliveries:
                order: OrderPlaced = delivery.event
                print(f"billing order {order.order_id}: {order.total:.2f} "
                      f"(workflow {delivery.correlation_id}, event {delivery.id})", flush=True)
                billed += 1
                if billed == count:
                    break


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else None))
