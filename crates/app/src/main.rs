//! `freshplan` — the FreshPlan Leads service binary: `serve` (migrates first unless
//! `--no-migrate`), `migrate`, `token`, `openapi` (prints the OpenAPI document; needs no database
//! or configuration).

use std::io::Write as _;
use std::net::TcpListener;

use anyhow::Context;

fn usage() -> ! {
    eprintln!(
        "usage: freshplan serve [--no-migrate] | freshplan migrate | freshplan token SUB ROLES TERRITORIES \
         | freshplan openapi"
    );
    std::process::exit(2)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let config = freshplan_app::config::Config::from_env()?;
            freshplan_app::init_tracing(config.log_json);
            if !args.iter().any(|a| a == "--no-migrate") {
                freshplan_store_postgres::migrate(&config.database_url)
                    .await
                    .context("migrating")?;
            }
            let listener = TcpListener::bind(&config.bind)
                .with_context(|| format!("binding {}", config.bind))?;
            tracing::info!(address = %config.bind, "serving");
            freshplan_app::start(&config, listener)
                .await?
                .run_until_signal()
                .await?;
            tracing::info!("stopped");
            Ok(())
        }
        Some("migrate") => {
            let config = freshplan_app::config::Config::from_env()?;
            freshplan_app::init_tracing(config.log_json);
            freshplan_store_postgres::migrate(&config.database_url)
                .await
                .context("migrating")?;
            Ok(())
        }
        Some("token") => {
            let [_, sub, roles, territories] = args.as_slice() else {
                usage()
            };
            #[allow(clippy::disallowed_methods)] // the binary reads its configuration
            let secret = std::env::var("FRESHPLAN_AUTH_HS256_SECRET")
                .context("FRESHPLAN_AUTH_HS256_SECRET is not set")?;
            let split = |s: &str| {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            let roles = split(roles);
            let territories = split(territories);
            let r: Vec<&str> = roles.iter().map(String::as_str).collect();
            let t: Vec<&str> = territories.iter().map(String::as_str).collect();
            println!(
                "{}",
                freshplan_app::auth::mint_hs256(&secret, sub, &r, &t, 12 * 3600)?
            );
            Ok(())
        }
        Some("openapi") => {
            if args.len() != 1 {
                usage()
            }
            let json = serde_json::to_string_pretty(&freshplan_app::openapi::document())
                .context("serialising the OpenAPI document")?;
            // `freshplan openapi | head` is fine: a closed pipe is not an error.
            match writeln!(std::io::stdout().lock(), "{json}") {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("writing the OpenAPI document")
                }
                _ => Ok(()),
            }
        }
        _ => usage(),
    }
}
