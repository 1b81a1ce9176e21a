// main.ts: a small client compiled against types generated from docs/openapi.yaml
// (openapi-typescript -> generated/shopd.ts at test time). It signs in to a store and
// lists its products, so a document that cannot describe that flow fails to compile.
import createClient from "openapi-fetch";
import type { paths, components } from "./generated/shopd";

type Product = components["schemas"]["Product"];

export async function cheapestProducts(baseUrl: string, store: string, email: string, password: string): Promise<Product[]> {
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
  const products: Product[] = page.data.data;
  for (const p of products) {
    const cents: number = p.base_price;
    const category: string = p.category ? p.category.name : "(none)";
    const skus: string[] = p.variants.map((v) => v.sku);
    console.log(`${p.name} ${cents} ${category} [${skus.join(", ")}] as ${role}`);
  }
  const next: string | null = page.data.next_cursor;
  if (next !== null) console.log(`more after ${next}`);
  return products;
}
