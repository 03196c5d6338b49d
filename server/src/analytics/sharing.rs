//! GPUs held by several jobs at once (Slurm shards, MPS, time slicing): a job's time on such a GPU cut
//! where the other holders come and go, each piece charged `1 / holders` of the GPU's energy over it.
//! Every job cuts at the same instants and counts the same holders, so at any moment the shares of the
//! jobs holding a GPU add up to 1: the GPU's energy is charged once, whole.

/// `[from_ms, to_ms)` of one job cut where the `others` (other jobs' spans on the same GPU, `[start,
/// end)`) begin and end: `(start, end, holders)` with `holders` counting the job itself.
pub fn segments(from_ms: i64, to_ms: i64, others: &[(i64, i64)]) -> Vec<(i64, i64, u32)> {
    let mut cuts: Vec<i64> = vec![from_ms, to_ms];
    for &(s, e) in others {
        for t in [s, e] {
            if from_ms < t && t < to_ms {
                cuts.push(t);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let others_on = others.iter().filter(|&&(s, e)| s <= a && b <= e).count() as u32;
            (a, b, 1 + others_on)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_cut_where_others_come_and_go() {
        assert_eq!(segments(0, 100, &[]), [(0, 100, 1)]);
        assert_eq!(
            segments(0, 100, &[(30, 200), (50, 60)]),
            [(0, 30, 1), (30, 50, 2), (50, 60, 3), (60, 100, 2)]
        );
        assert_eq!(segments(10, 20, &[(0, 100)]), [(10, 20, 2)]);
    }
}
