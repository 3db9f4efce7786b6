//! What forwarding to another origin adds to held playlist requests and to
//! parts. Prints one JSON line. See the `loadgen` crate's `forwarded` module.

use clap::Parser;

/// The same requests, to the origin holding a window and to another one.
#[derive(Parser)]
#[command(name = "forward-probe")]
struct Args {
    /// A media playlist URL on the origin holding the window.
    #[arg(long)]
    direct: String,
    /// The same playlist on another origin.
    #[arg(long)]
    forwarded: String,
    /// Samples.
    #[arg(long, default_value_t = 300)]
    samples: usize,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    match loadgen::forwarded::run(loadgen::forwarded::ForwardedConfig {
        direct: a.direct,
        forwarded: a.forwarded,
        samples: a.samples,
    })
    .await
    {
        Ok(r) => println!("{}", serde_json::to_string(&r).expect("serializable")),
        Err(e) => {
            eprintln!("forward-probe: {e}");
            std::process::exit(1);
        }
    }
}
