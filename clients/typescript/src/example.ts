/**
 * A small typed client of the FreshPlan Leads API with openapi-fetch and the generated
 * `schema.d.ts` (`cargo xtask gen-clients`). Paths, parameters, bodies, responses and problems
 * are all checked by the compiler against the OpenAPI document; `cargo xtask test` type-checks
 * this file (it does not run it).
 */
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type Lead = components["schemas"]["Lead"];
export type LeadPage = components["schemas"]["LeadPage"];
export type LeadCreate = components["schemas"]["LeadCreate"];
export type LeadPatch = components["schemas"]["LeadPatch"];
/** An RFC 9457 problem (`application/problem+json`): every error of the API. */
export type Problem = components["schemas"]["Problem"];

/** A client for `baseUrl` (e.g. `http://localhost:8080`) with a bearer token. */
export function leadsClient(baseUrl: string, token: string) {
  return createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${token}` },
  });
}

export type LeadsClient = ReturnType<typeof leadsClient>;

/** A call the API refused, with its problem. */
export class ProblemError extends Error {
  constructor(
    readonly problem: Problem,
    readonly response: Response,
  ) {
    super(`${problem.status} ${problem.title}: ${problem.detail}`);
    this.name = "ProblemError";
  }

  /** The validation errors per field, when there are any (400, 422). */
  fieldErrors(): string[] {
    return (this.problem.errors ?? []).map((e) => `${e.field}: ${e.message}`);
  }
}

/** One page of the leads the caller may see, newest first (`size` is 1–200). */
export async function listLeads(
  client: LeadsClient,
  page: number,
  size: number,
  q?: string,
): Promise<LeadPage> {
  const { data, error, response } = await client.GET("/api/leads", {
    params: {
      query: {
        page,
        size,
        sort: "registeredAt,desc",
        status: ["REGISTERED", "ACTIVE"],
        ...(q === undefined ? {} : { q }),
      },
    },
  });
  if (error !== undefined) throw new ProblemError(error, response);
  return data;
}

/** A lead and the ETag to change it with. */
export interface Versioned {
  lead: Lead;
  etag: string;
}

/**
 * Registers a lead. The Idempotency-Key makes a retry after a lost response safe: the API
 * replays the first response for 24 h instead of creating a second lead.
 */
export async function createLead(
  client: LeadsClient,
  lead: LeadCreate,
  idempotencyKey: string = crypto.randomUUID(),
): Promise<Versioned> {
  const { data, error, response } = await client.POST("/api/leads", {
    params: { header: { "Idempotency-Key": idempotencyKey } },
    body: lead,
  });
  if (error !== undefined) throw new ProblemError(error, response);
  return { lead: data, etag: response.headers.get("ETag") ?? `"${data.version}"` };
}

/** A JSON merge patch of the lead last read with `etag` (If-Match; 412 when it changed since). */
export async function patchLead(
  client: LeadsClient,
  id: string,
  etag: string,
  patch: LeadPatch,
): Promise<Versioned> {
  const { data, error, response } = await client.PATCH("/api/leads/{id}", {
    params: { path: { id }, header: { "If-Match": etag } },
    body: patch,
    headers: { "Content-Type": "application/merge-patch+json" },
  });
  if (error !== undefined) throw new ProblemError(error, response);
  return { lead: data, etag: response.headers.get("ETag") ?? `"${data.version}"` };
}

/** The lead as it is now, with its ETag. */
export async function getLead(client: LeadsClient, id: string): Promise<Versioned> {
  const { data, error, response } = await client.GET("/api/leads/{id}", {
    params: { path: { id } },
  });
  if (error !== undefined) throw new ProblemError(error, response);
  return { lead: data, etag: response.headers.get("ETag") ?? `"${data.version}"` };
}

/** What to tell the user about a refused call. */
export function explain(e: ProblemError): string {
  switch (e.problem.status) {
    case 400:
    case 422:
      return `Please check: ${e.fieldErrors().join("; ") || e.problem.detail}`;
    case 401:
      return "Your session has expired; sign in again.";
    case 403:
      return "You may not do this.";
    case 404:
      return "This lead does not exist (or is not yours to see).";
    case 409:
      return `A conflict: ${e.problem.detail}`;
    case 412:
      return "Someone changed this lead in the meantime; reload it.";
    default:
      return e.problem.detail;
  }
}

/** Registers a lead, qualifies it (re-reading once when someone else changed it first), and
 * lists the newest leads. */
export async function example(baseUrl: string, token: string): Promise<void> {
  const client = leadsClient(baseUrl, token);
  try {
    const created = await createLead(client, {
      companyName: "Gasthaus Zur Post GmbH",
      city: "Berlin",
      postalCode: "10115",
      businessType: "RESTAURANT",
    });
    let current = created;
    try {
      current = await patchLead(client, created.lead.id, created.etag, { status: "QUALIFIED" });
    } catch (e) {
      if (!(e instanceof ProblemError && e.problem.status === 412)) throw e;
      const fresh = await getLead(client, created.lead.id);
      current = await patchLead(client, fresh.lead.id, fresh.etag, { status: "QUALIFIED" });
    }
    console.log(`${current.lead.companyName}: ${current.lead.status} (version ${current.lead.version})`);

    const page = await listLeads(client, 0, 20);
    console.log(`${page.total} leads, page 1 of ${page.totalPages}:`);
    for (const lead of page.data) {
      console.log(`  ${lead.companyName} (${lead.territory.id}, ${lead.status})`);
    }
  } catch (e) {
    if (e instanceof ProblemError) {
      console.error(explain(e));
      return;
    }
    throw e;
  }
}
