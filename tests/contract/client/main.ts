// main.ts: a small client compiled against types generated from docs/openapi.yaml
// (openapi-typescript -> generated/shopd.ts at test time). It signs in to a store and
// lists its products, and a guest checks out a cart (X-Cart-Id, shipping quote, the
// typed 402 and 409 answers), so a document that cannot describe those flows fails to
// compile.
import createClient from "openapi-fetch";
import type { paths, components } from "./generated/shopd";

type Product = components["schemas"]["Product"];
type ProductSummary = components["schemas"]["ProductSummary"];

// A product grid: the lean list entries; the whole products (variants, category) with
// expand=variants.
export async function cheapestProducts(baseUrl: string, store: string, email: string, password: string): Promise<ProductSummary[]> {
  const client = createClient<paths>({ baseUrl });
  const login = await client.POST("/api/v1/auth/login", {
    params: { header: { "X-Tenant-Id": store } },
    body: { email, password },
  });
  if (login.error) throw new Error(`login failed: ${login.error.error.code}`);
  const token: string = login.data.access_token;
  const role: "SUPER_ADMIN" | "STORE_ADMIN" | "CUSTOMER" = login.data.user.role;

  const page = await client.GET("/api/v1/products", {
    params: { header: { "X-Tenant-Id": store }, query: { sort: "price", limit: 10, min_price: 0 } },
    headers: { Authorization: `Bearer ${token}` },
  });
  if (page.error) throw new Error(`list failed: ${page.error.error.message}`);
  const products: ProductSummary[] = page.data.data.filter((p): p is ProductSummary => "price_min" in p);
  for (const p of products) {
    const from: number = p.price_min;
    const to: number = p.price_max;
    const stock: boolean = p.in_stock;
    console.log(`${p.name} ${from}-${to} (${p.variant_count} variants${stock ? "" : ", sold out"}) as ${role}`);
  }
  const next: string | null = page.data.next_cursor;
  if (next !== null) console.log(`more after ${next}`);

  const full = await client.GET("/api/v1/products", {
    params: { header: { "X-Tenant-Id": store }, query: { sort: "price", limit: 10, expand: "variants" } },
  });
  if (full.error) throw new Error(`list failed: ${full.error.error.message}`);
  for (const p of full.data.data) {
    if (!("variants" in p)) continue;
    const whole: Product = p;
    const category: string = whole.category ? whole.category.name : "(none)";
    const skus: string[] = whole.variants.map((v) => v.sku);
    console.log(`${whole.name} ${whole.base_price} ${category} [${skus.join(", ")}]`);
  }
  return products;
}

type Order = components["schemas"]["Order"];
type Address = components["schemas"]["Address"];

// A guest's cart -> checkout, as a storefront would write it: the cart id travels in
// X-Cart-Id, the shipping rate comes from the quote, a stale total is a typed 409 and
// a declined payment a typed 402 that still carries the order.
export async function guestCheckout(baseUrl: string, store: string, variantId: number, email: string, address: Address): Promise<Order> {
  const client = createClient<paths>({ baseUrl });
  const added = await client.POST("/api/v1/cart/add", {
    params: { header: { "X-Tenant-Id": store } },
    body: { variant_id: variantId, quantity: 2 },
  });
  if (added.error) {
    const short = added.error.error.code === "insufficient_stock" && "details" in added.error.error ? added.error.error.details[0] : null;
    throw new Error(`add failed: ${added.error.error.code}${short && "available" in short ? ` (${short.available} left)` : ""}`);
  }
  const cartId: string | null = added.response.headers.get("X-Cart-Id") ?? added.data.id;
  if (cartId === null) throw new Error("no cart id");
  const header = { "X-Tenant-Id": store, "X-Cart-Id": cartId };
  const quote = await client.GET("/api/v1/checkout/shipping-rates", { params: { header, query: { country: address.country } } });
  if (quote.error) throw new Error(`no rates: ${quote.error.error.code}`);
  const rate = quote.data.rates[0];
  if (rate === undefined) throw new Error(`no shipping to ${address.country}`);
  const expected: number = quote.data.subtotal + rate.price;
  const placed = await client.POST("/api/v1/checkout", {
    params: { header },
    body: { email, shipping_address: address, shipping_rate_id: rate.id, expected_total: expected },
  });
  if (placed.response.status === 402 && placed.error && "order" in placed.error.error) {
    const order: Order = placed.error.error.order;
    throw new Error(`payment declined for ${order.name}`);
  }
  if (placed.error) {
    const e = placed.error.error;
    if (e.code === "price_changed" && "totals" in e) throw new Error(`the total is now ${e.totals.total}`);
    throw new Error(`checkout failed: ${e.code}`);
  }
  const order = placed.data;
  const paid: boolean = order.status === "PAID" && order.payment.status === "succeeded";
  const lines: number = order.items.reduce((n, i) => n + i.quantity, 0);
  console.log(`${order.name} ${order.total} ${order.currency} ${lines} units ${paid ? "paid" : order.payment_status}`);
  return order;
}
