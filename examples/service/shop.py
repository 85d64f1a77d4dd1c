"""A small shop service built only on Buttress's public API.

Products with stock, and orders that reserve it and charge a payment gateway:

- repositories and a unit of work per request (SQLite by default, PostgreSQL with
  ``BUTTRESS_DATABASE__URL``), optimistic locking on stock;
- product reads cached (in memory by default, Redis with ``BUTTRESS_CACHE__BACKEND``)
  and invalidated when an order changes the stock;
- orders placed through a command and the message bus: the command's handler runs
  in a unit of work of its own, and the ``OrderPlaced`` event it commits is handled
  after the commit (the cached product view is forgotten);
- the payment call protected by a `Policy` (retry, breaker, timeout): when the
  gateway is down the breaker opens and the service answers 503 with Retry-After;
- containers checked at startup, resources released at shutdown.

Run it with ``uv run uvicorn shop:app --app-dir examples/service`` (uvicorn is not a
Buttress dependency: install it to serve), or drive it in tests through httpx.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from dependency_injector import containers, providers
from fastapi import Depends, FastAPI, Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from buttress.caching import cached
from buttress.di import CachingContainer, PersistenceContainer, ResilienceContainer
from buttress.di.fastapi import install_error_handlers, lifespan, unit_of_work
from buttress.domain import AggregateRoot, DomainEvent
from buttress.errors import ConflictError
from buttress.messaging import AsyncMessageBus, Command, Handlers
from buttress.resilience import Policy


class Base(DeclarativeBase):
    pass


class PlaceOrder(Command, name="shop-service.place-order"):
    sku: str
    quantity: int


class OrderPlaced(DomainEvent, name="shop-service.order-placed"):
    order_id: int
    sku: str
    quantity: int


class Product(Base):
    __tablename__ = "shop_product"

    sku: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    price: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    stock: Mapped[int]
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling

    def reserve(self, quantity: int) -> None:
        if quantity > self.stock:
            raise ConflictError(
                f"only {self.stock} of {self.sku} in stock, {quantity} asked",
                entity="Product",
                key=self.sku,
                detail=f"only {self.stock} of {self.sku} in stock",
            )
        self.stock -= quantity


class Order(AggregateRoot, Base):
    __tablename__ = "shop_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(sa.ForeignKey(Product.sku))
    quantity: Mapped[int]
    paid: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class PaymentGateway:
    """The outbound dependency: a payment service (here in process; ``down`` to break it)."""

    def __init__(self) -> None:
        self.down = False
        self.charges: list[tuple[int, Decimal]] = []

    async def charge(self, order_id: int, amount: Decimal) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("the payment gateway does not answer")
        self.charges.append((order_id, amount))


class Shop(containers.DeclarativeContainer):
    """The service's composition root."""

    persistence = providers.Container(PersistenceContainer)
    caching = providers.Container(CachingContainer)
    resilience = providers.Container(ResilienceContainer)
    gateway = providers.ThreadSafeSingleton(PaymentGateway)


MAX_INT = 2**31 - 1
"""The largest value of an INTEGER column on every backend."""


def _json_integer(value: object) -> object:
    """A JSON integer: 3 or 3.0, never true, "3" or 3.5 (as the schema says)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


Count = Annotated[int, BeforeValidator(_json_integer)]
Sku = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9_-]+$")]
"""A product's key: fits its column and a URL path segment as it is."""

Price = Annotated[str, Field(pattern=r"^[0-9]{1,8}(\.[0-9]{1,2})?$", examples=["19.90"])]
"""Up to 8 digits and 2 decimals, as text: the NUMERIC(10, 2) column holds it exactly."""


class NewProduct(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: str = Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$")
    price: Price
    stock: Count = Field(ge=0, le=MAX_INT)


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: Count = Field(ge=1, le=MAX_INT)


class OrderOut(BaseModel):
    id: int
    sku: str
    quantity: int
    paid: bool


CENTS = Decimal("0.01")


class ProductOut(BaseModel):
    sku: str
    name: str
    price: Decimal
    stock: int


handlers = Handlers()


@handlers.command(PlaceOrder)
async def place_order(
    command: PlaceOrder, uow: Any, gateway: PaymentGateway, payments: Policy
) -> OrderOut:
    """Reserve the stock, charge the payment, keep the order: all or nothing."""
    async with uow:
        product = await uow.repository(Product, str).get(command.sku)
        product.reserve(command.quantity)
        order = await uow.repository(Order, int).add(
            Order(sku=command.sku, quantity=command.quantity)
        )
        order.record_event(
            OrderPlaced(order_id=order.id, sku=command.sku, quantity=command.quantity)
        )
        await payments(gateway.charge)(order.id, product.price * command.quantity)
        order.paid = True
        await uow.commit()
    return OrderOut(id=order.id, sku=order.sku, quantity=order.quantity, paid=order.paid)


@handlers.event(OrderPlaced)
async def forget_cached_product(event: OrderPlaced, product_view: Any) -> None:
    """The stock changed: the next read of the product goes to the database."""
    await product_view.ainvalidate(event.sku)


def create_app(shop: Shop) -> FastAPI:
    """The application, wired to ``shop``'s providers."""
    checked = lifespan(shop)

    @contextlib.asynccontextmanager
    async def startup(app: FastAPI) -> AsyncIterator[None]:
        async with checked(app):  # wiring checked now; resources released at the end
            engine = await shop.persistence.async_engine()
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            yield

    app = FastAPI(title="shop", lifespan=startup)
    # The gateway's own error, left after the last retry, is an outage for our clients.
    install_error_handlers(app, statuses={ConnectionError: 503})
    Uow = Annotated[Any, Depends(unit_of_work(shop.persistence.async_unit_of_work))]  # noqa: N806

    payments = Policy(
        retry=shop.resilience.retry()(on=ConnectionError, attempts=2, wait_initial=0.01),
        breaker=shop.resilience.breakers()(f"payments-{id(shop)}"),
        timeout=2.0,
    )

    @cached(cache=shop.caching.cache, ttl=60)
    async def product_view(sku: str) -> ProductOut:
        async with await shop.persistence.async_unit_of_work() as uow:
            product = await uow.repository(Product, str).get(sku)
            return ProductOut(
                sku=product.sku, name=product.name, price=product.price, stock=product.stock
            )

    @app.post("/products", status_code=201)
    async def add_product(body: NewProduct, uow: Uow) -> ProductOut:
        price = Decimal(body.price).quantize(CENTS)  # as the NUMERIC(10, 2) column keeps it
        product = Product(sku=body.sku, name=body.name, price=price, stock=body.stock)
        await uow.repository(Product, str).add(product)
        await uow.commit()
        return ProductOut(
            sku=product.sku, name=product.name, price=product.price, stock=product.stock
        )

    @app.get("/products/{sku}")
    async def read_product(sku: Annotated[Sku, Path()]) -> ProductOut:
        return await product_view(sku)

    bus = AsyncMessageBus(
        handlers,
        dependencies={
            "uow": shop.persistence.async_unit_of_work,  # a new unit for every dispatch
            "gateway": shop.gateway,
            "payments": lambda: payments,
            "product_view": lambda: product_view,
        },
    )
    bus.check()

    @app.post("/orders", status_code=201)
    async def place_order_route(body: NewOrder) -> OrderOut:
        report = await bus.handle(PlaceOrder(sku=body.sku, quantity=body.quantity))
        result: OrderOut = report.result
        return result

    @app.get("/orders/{order_id}")
    async def read_order(order_id: Annotated[int, Path(ge=1, le=MAX_INT)], uow: Uow) -> OrderOut:
        order = await uow.repository(Order, int).get(order_id)
        return OrderOut(id=order.id, sku=order.sku, quantity=order.quantity, paid=order.paid)

    app.state.product_view = product_view
    app.state.bus = bus
    return app


shop = Shop()
app = create_app(shop)
