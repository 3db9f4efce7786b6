//! The load generator against the real server: simulated low-latency viewers
//! receive every part without stalls or errors.

mod common;

use std::time::Duration;

use common::*;
use loadgen::llhls::{LoadConfig, run};
use testkit::ffmpeg::TestSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_ll_hls_viewers_get_every_part_without_stalls() {
    let server = start_server(&["load"], |_| {}).await;
    let master = format!("{}/hls/load/master.m3u8", server.base());
    let mut ff = TestSource::new("854x480", 20.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url("load"));
    assert!(
        eventually(Duration::from_secs(20), async || get(&master).await.status
            == 200)
        .await
    );
    let report = run(LoadConfig {
        url: master,
        viewers: 20,
        duration: Duration::from_secs(8),
        rendition: Some("480p.m3u8".into()),
        ramp: Duration::from_secs(1),
    })
    .await;
    eprintln!("{report:?}");
    assert_eq!(report.errors, 0);
    assert_eq!(report.stalls, 0);
    // 5 parts a second each, less the ramp and the first playlist.
    assert!(report.parts >= 20 * 30, "{} parts", report.parts);
    assert!(report.bytes > report.parts * 1000);
    assert!(report.delay_p50_ms < 100.0, "{}", report.delay_p50_ms);
    ff.kill().await.ok();
}
