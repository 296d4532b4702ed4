//! Scenario 14: the echo under load, with the load the same for every
//! target.
//!
//! Scenario 4's streams `cat` as fast as a server reads them, so a server
//! that reads more carries more load, and its echo competes with more
//! work for the same two cores. ttyd reads one buffer from a program's PTY
//! and reads again only once it has written that buffer to the program's
//! WebSocket; termstream reads a program whatever its viewers do, and
//! carries more. Here each of the three streams is this bench's own binary
//! writing the big file at a fixed rate ([`crate::pacer`]),
//! `--equal-mbps` in all (30 by default: both servers kept up with it in
//! every round here; at 40 neither always did), so the echoes compare
//! designs at equal work. The bare PTY under the same paced load is the
//! floor; ttyd, with `--peer`, is measured beside. Each target's load
//! delivered is checked against the rate: a comparison with a target that
//! fell behind is not one at equal load.
//!
//! The readers count what the terminals send, `\r\n` for each `\n`: the
//! file's 80-byte lines arrive as 81, 1.25 % above the rate written.

use crate::Ctx;
use crate::baseline;
use crate::latency::{self, LIMIT, Loaded, pct_rows};
use crate::report::{Goal, Percentiles, Row};

const S14: &str = "14 echo under equal load";

/// Scenario 14: termstream, the bare PTY and (with a peer) ttyd, each
/// echoing while three streams write `ctx.equal`'s MB/s in all.
pub async fn echo(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (rate, script) = (ctx.equal.mbps, ctx.equal.script.as_str());
    let (w, n) = (ctx.warmup, ctx.samples);
    let (bare, bare_mbps) = baseline::pty_echo_loaded(script, w, n, ctx.pace, LIMIT).await?;
    let bare = Percentiles::of(&bare);
    let (ours, why): (Option<Loaded>, String) = match ctx.ws_target().await {
        Err(why) => (None, why),
        Ok(target) => {
            let r = async {
                let (client, id) = latency::echo_client(&target).await?;
                client.close().await;
                latency::loaded_echo(ctx, &target, &id, script, "termstream, paced").await
            }
            .await;
            target.stop().await;
            match r {
                Ok(l) => (Some(l), String::new()),
                Err(e) => (None, format!("failed: {e:#}")),
            }
        }
    };
    let streaming = format!("echo, 3 sessions streaming {rate} MB/s");
    let mut rows = pct_rows(
        S14,
        &format!("bare PTY echo, 3 bare PTYs streaming {rate} MB/s"),
        Some(bare),
        None,
        "",
    );
    rows.extend(pct_rows(
        S14,
        &streaming,
        ours.map(|l| l.0),
        Some(("bare PTY, same load", bare)),
        &why,
    ));
    // Equal load is the point: readers that got less than the rate say
    // that their server could not keep up with it.
    let delivered = "load delivered to the 3 readers";
    rows.push(match ours {
        Some((_, got, _)) => Row::info(S14, delivered, "MB/s", got)
            .baseline("the paced rate", rate)
            .goal(Goal::RatioAtLeast(0.95), "≥ 95 % of the rate"),
        None => Row::missing(S14, delivered, "MB/s", &why),
    });
    rows.push(
        Row::info(S14, "load delivered to 3 bare PTY readers", "MB/s", bare_mbps).baseline("the paced rate", rate),
    );
    let Some(peer) = &ctx.peer else {
        return Ok(rows);
    };
    let (_, peer_loaded) = crate::peer::echo(&peer.path, (w, n, ctx.pace), Some(script), LIMIT).await?;
    let Some((peer_samples, peer_mbps, peer_cpu)) = peer_loaded else {
        anyhow::bail!("ttyd measured no echo under load");
    };
    let mut vs = pct_rows(
        S14,
        &format!("{streaming}, vs ttyd"),
        ours.map(|l| l.0),
        Some(("ttyd, same load", Percentiles::of(&peer_samples))),
        &why,
    );
    vs[0] = vs[0].clone().goal(Goal::RatioAtMost(1.2), "≤ 1.2× ttyd");
    vs[2] = vs[2].clone().goal(Goal::RatioAtMost(1.0), "≤ ttyd");
    rows.extend(vs);
    rows.push(
        Row::info(S14, "load delivered to ttyd's 3 readers", "MB/s", peer_mbps)
            .baseline("the paced rate", rate)
            .goal(Goal::RatioAtLeast(0.95), "≥ 95 % of the rate"),
    );
    let cpu = "server CPU per MB, 3 streams + echo probe, vs ttyd";
    let row = match ours.and_then(|l| l.2) {
        Some(ms) => Row::info(S14, cpu, "ms", ms),
        None => Row::missing(S14, cpu, "ms", if why.is_empty() { "server pid unknown" } else { &why }),
    };
    rows.push(match peer_cpu {
        Some(b) => row.baseline("ttyd", b),
        None => row,
    });
    Ok(rows)
}
