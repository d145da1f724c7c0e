"""Service A: place orders (commands), each emitting OrderPlaced, published through RabbitMQ.

    RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/ python orders_service.py 3
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec

from svrnty_events import Event, EventStreaming, Workflow


class OrderPlaced(Event):
    order_id: int
    total: float


class PlaceOrder(msgspec.Struct):
    order_id: int
    total: float


class OrderWorkflow(Workflow):
    pass


streaming = EventStreaming.from_toml(Path(__file__).with_name("orders.toml"))
streaming.bind_workflow(OrderWorkflow, "orders")


@streaming.command_handler(PlaceOrder, workflow=OrderWorkflow)
def place_order(command: PlaceOrder, workflow: OrderWorkflow) -> None:
    workflow.emit(OrderPlaced(order_id=command.order_id, total=command.total))


async def main(count: int) -> None:
    async with streaming.run() as host:
        for n in range(1, count + 1):
            result = await host.send(PlaceOrder(order_id=n, total=10.0 * n))
            print(f"placed order {n} in workflow {result.workflow_id}", flush=True)
        # stay until the broker confirmed every event (then the host may stop)
        while (await host.subscription_stats("to-billing"))[0]["lag"]:
            await asyncio.sleep(0.1)
        print("all orders published", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
