use serde_json::{Map, json};

use super::*;

fn chunk(id: i64, store: &str, file: &str, text: &str) -> IndexedChunk {
    IndexedChunk {
        id,
        store_id: store.into(),
        file_id: file.into(),
        text: text.into(),
        attributes: Map::new(),
        vector: Vec::new(),
    }
}

fn stores(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn chinese_queries_score_above_zero_and_rank_the_right_document_first()
-> Result<(), IndexError> {
    let dir = tempfile::tempdir().map_err(|e| IndexError::Backend(e.to_string()))?;
    let index = TantivyKeywordIndex::open(dir.path())?;
    index
        .add(&[
            chunk(
                1,
                "s",
                "f",
                "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
            ),
            chunk(2, "s", "f", "上海是中国最大的经济中心和国际金融中心。"),
            chunk(3, "s", "f", "深圳的科技企业众多，包括许多互联网公司。"),
            chunk(
                4,
                "s",
                "f",
                "The capital of France is Paris, famous for museums.",
            ),
        ])
        .await?;
    index.commit(1).await?;
    let cases = [
        ("中国的首都是哪里", 1),
        ("国际金融中心", 2),
        ("互联网科技公司", 3),
        ("museum in the French capital", 4),
        ("MUSEUMS", 4),
    ];
    for (query, expected) in cases {
        let hits = index.search(&stores(&["s"]), query, None, 10).await?;
        assert_eq!(
            hits.first().map(|h| h.id),
            Some(expected),
            "{query}: {hits:?}"
        );
        assert!(hits[0].score > 0.0, "{query}: {hits:?}");
    }
    Ok(())
}

#[tokio::test]
async fn query_syntax_is_plain_text() -> Result<(), IndexError> {
    let dir = tempfile::tempdir().map_err(|e| IndexError::Backend(e.to_string()))?;
    let index = TantivyKeywordIndex::open(dir.path())?;
    index
        .add(&[chunk(1, "s", "f", "title: rust AND tantivy \"quoted\"")])
        .await?;
    index.commit(1).await?;
    for query in [
        "title:rust",
        "\"unbalanced",
        "AND",
        "a OR (b",
        "text:* -x ^2",
        "",
        "。，",
    ] {
        let hits = index.search(&stores(&["s"]), query, None, 10).await?;
        assert!(hits.len() <= 1, "{query}");
    }
    let hits = index
        .search(&stores(&["s"]), "title:rust", None, 10)
        .await?;
    assert_eq!(hits.len(), 1);
    Ok(())
}

#[tokio::test]
async fn filters_do_not_change_scores() -> Result<(), IndexError> {
    let dir = tempfile::tempdir().map_err(|e| IndexError::Backend(e.to_string()))?;
    let index = TantivyKeywordIndex::open(dir.path())?;
    let mut tagged = chunk(1, "s", "f", "alpha beta");
    tagged.attributes.insert("region".into(), json!("us"));
    index
        .add(&[tagged, chunk(2, "s", "g", "alpha gamma")])
        .await?;
    index.commit(1).await?;
    let plain = index
        .search(&stores(&["s"]), "alpha beta", None, 10)
        .await?;
    let filter: Filter =
        serde_json::from_value(json!({"type": "eq", "key": "region", "value": "us"}))
            .map_err(|e| IndexError::Invalid(e.to_string()))?;
    let filtered = index
        .search(&stores(&["s"]), "alpha beta", Some(&filter), 10)
        .await?;
    assert_eq!(filtered.len(), 1);
    assert_eq!(Some(&filtered[0]), plain.iter().find(|h| h.id == 1));
    Ok(())
}

#[tokio::test]
async fn a_second_opener_is_refused_while_the_first_holds_the_lock() -> Result<(), IndexError> {
    let dir = tempfile::tempdir().map_err(|e| IndexError::Backend(e.to_string()))?;
    let first = TantivyKeywordIndex::open(dir.path())?;
    assert!(matches!(
        TantivyKeywordIndex::open(dir.path()),
        Err(IndexError::Unavailable(_))
    ));
    drop(first);
    TantivyKeywordIndex::open(dir.path())?;
    Ok(())
}

#[tokio::test]
async fn an_index_of_another_analyzer_version_is_emptied_at_open() -> Result<(), IndexError> {
    let dir = tempfile::tempdir().map_err(|e| IndexError::Backend(e.to_string()))?;
    let index = TantivyKeywordIndex::open(dir.path())?;
    index
        .add(&[chunk(1, "s", "f", "pressure distribution on a wing")])
        .await?;
    index.commit(7).await?;
    drop(index);

    // Reopened by the same version: nothing changes.
    let index = TantivyKeywordIndex::open(dir.path())?;
    assert_eq!(index.checkpoint().await?, 7);
    assert_eq!(
        index.search(&stores(&["s"]), "wing", None, 10).await?.len(),
        1
    );
    drop(index);

    // Built by an older analyzer (or before versions were recorded): emptied, checkpoint 0,
    // so the knowledge layer replays the chunk store into it.
    for older in [Some("1"), None] {
        let marker = dir.path().join(ANALYZER_FILE);
        match older {
            Some(version) => std::fs::write(&marker, version),
            None => std::fs::remove_file(&marker),
        }
        .map_err(|e| IndexError::Backend(e.to_string()))?;
        let index = TantivyKeywordIndex::open(dir.path())?;
        assert_eq!(index.checkpoint().await?, 0);
        assert!(
            index
                .search(&stores(&["s"]), "wing", None, 10)
                .await?
                .is_empty()
        );
        index.add(&[chunk(2, "s", "f", "a wing again")]).await?;
        index.commit(9).await?;
    }
    Ok(())
}
