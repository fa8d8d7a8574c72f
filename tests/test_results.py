"""metaloss_sk.results: what a search reports (the verbose lines)."""



def test_the_verbose_lines_eta_is_capped_by_max_time():
    from metaloss_sk.results import generation_line

    entry = dict(generation=9, best_score=0.9, median_score=0.8, trained=5, promoted=5, cache_hits=0,
                 equivalent=0, rejected=0, failures=0, elapsed=100.0)
    assert "eta   400.0s" in generation_line(entry, 50)  # 10 s a generation, 40 to go
    assert "eta    50.0s" in generation_line(entry, 50, max_time=150)
    assert "eta     0.0s" in generation_line(entry, 50, max_time=90)
