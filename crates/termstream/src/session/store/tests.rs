//! Tests of the session store: first and later records, segments written,
//! read back, rolled and deleted, and a log started in a spare's directory.

use super::*;

fn chunk(offset: u64, stream: Stream, s: &str) -> Chunk {
    Chunk {
        offset,
        stream,
        time_ms: offset * 10,
        read_at: None,
        data: Bytes::copy_from_slice(s.as_bytes()),
        wire: None,
    }
}

#[test]
fn a_first_record_is_written_in_place_and_later_ones_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    use termstream_proto::{Epoch, ProjectId, SessionId, SessionKind, SessionStatus};
    let mut info = SessionInfo {
        id: SessionId::new("first").unwrap(),
        kind: SessionKind::Pty,
        argv: vec!["sh".into()],
        cwd: "/".into(),
        project: ProjectId::default(),
        status: SessionStatus::Running,
        epoch: Epoch(0xaa),
        output_offset: 0,
        cols: 80,
        rows: 24,
        pid: Some(7),
        created_at: 1,
        started_at: Some(1),
        ended_at: None,
        exit_code: None,
        signal: None,
        duration_ms: None,
        error: None,
    };
    write_meta_new(dir.path(), &info, false).unwrap();
    assert_eq!(read_meta(dir.path()).unwrap(), info);
    assert!(!dir.path().join("meta.json.tmp").exists());
    info.cols = 100;
    write_meta(dir.path(), &info).unwrap();
    assert_eq!(read_meta(dir.path()).unwrap().cols, 100);

    // In a spare's room: written over it, padded with spaces to the whole
    // room (the file's size unchanged, no byte of the room left), and read
    // back; a record longer than the room grows the file.
    let meta = dir.path().join("meta.json");
    for argv_len in [2, 2 * FIRST_RECORD_ROOM] {
        make_first_record_room(&mut File::create(&meta).unwrap()).unwrap();
        assert!(is_blank_meta(&fs::read(&meta).unwrap()));
        info.argv = vec!["x".repeat(argv_len)];
        write_meta_new(dir.path(), &info, true).unwrap();
        assert_eq!(read_meta(dir.path()).unwrap(), info);
        let bytes = fs::read(&meta).unwrap();
        if argv_len < FIRST_RECORD_ROOM {
            assert_eq!(bytes.len(), FIRST_RECORD_ROOM);
        } else {
            assert!(bytes.len() > 2 * FIRST_RECORD_ROOM, "{}", bytes.len());
        }
        assert!(!bytes.contains(&0), "the room shows through");
        assert!(!is_blank_meta(&bytes));
    }

    // Not prepared (an adopted spare's room, maybe an older server's): made
    // anew, the room gone.
    make_first_record_room(&mut File::create(&meta).unwrap()).unwrap();
    info.argv = vec!["sh".into()];
    write_meta_new(dir.path(), &info, false).unwrap();
    let bytes = fs::read(&meta).unwrap();
    assert_eq!(bytes, serde_json::to_vec_pretty(&info).unwrap());

    // Prepared, but the file is missing: made anew rather than lost.
    fs::remove_file(&meta).unwrap();
    write_meta_new(dir.path(), &info, true).unwrap();
    assert_eq!(read_meta(dir.path()).unwrap(), info);
}

/// A record torn by a crash over the room (its first sector and its last
/// on disk, the middle still the room's) is never taken for a record: the
/// room is zeros, which no JSON takes; spaces would have joined the two
/// halves into valid JSON.
#[test]
fn a_record_torn_over_the_room_does_not_parse() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.json");
    make_first_record_room(&mut File::create(&path).unwrap()).unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(br#"{"id": "torn","#, 0).unwrap();
    file.write_all_at(br#""kind": "pty"}"#, 1024).unwrap();
    let torn = fs::read(&path).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&torn).is_err());
    assert!(!is_blank_meta(&torn));
}

#[test]
fn writes_and_reads_back_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DiskLimits {
        segment_bytes: 8,
        max_bytes: 1 << 20,
    };
    let mut w = LogWriter::create(dir.path(), limits).unwrap();
    let mut offset = 0;
    for (i, word) in ["alpha ", "beta ", "gamma ", "delta"].iter().enumerate() {
        let stream = if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr };
        w.append_output(&chunk(offset, stream, word)).unwrap();
        offset += word.len() as u64;
    }
    w.append_resize(offset, 99, 100, 30).unwrap();
    assert!(segments(dir.path()).unwrap().len() > 1);
    let DiskRead::Chunks(c) = read_output(dir.path(), 3, usize::MAX).unwrap() else {
        panic!()
    };
    let text: String = c.iter().map(|c| String::from_utf8_lossy(&c.data)).collect();
    assert_eq!(text, "ha beta gamma delta");
    assert_eq!(c[1].stream, Stream::Stderr);
    assert_eq!(log_end(dir.path()).unwrap().0, offset);
    let mut resizes = 0;
    for_each_event(dir.path(), |e| {
        if let Event::Resize {
            cols: 100, rows: 30, ..
        } = e
        {
            resizes += 1;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(resizes, 1);
}

#[test]
fn old_segments_are_deleted_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DiskLimits {
        segment_bytes: 10,
        max_bytes: 30,
    };
    let mut w = LogWriter::create(dir.path(), limits).unwrap();
    for i in 0..20u64 {
        w.append_output(&chunk(i * 10, Stream::Pty, "0123456789")).unwrap();
    }
    let first = segments(dir.path()).unwrap()[0];
    assert!(first > 0);
    match read_output(dir.path(), 0, 10).unwrap() {
        DiskRead::Gone { earliest } => assert_eq!(earliest, first),
        other => panic!("expected gone, got {other:?}"),
    }
}

/// What a reader sees between the writer's creation of a new segment's
/// `.out` and of its `.idx` (a roll): the new segment holds nothing yet,
/// and the older output reads whole. Answered an error (HTTP 500) before.
#[test]
fn a_segment_without_its_index_yet_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DiskLimits {
        segment_bytes: 10,
        max_bytes: 1 << 20,
    };
    let mut w = LogWriter::create(dir.path(), limits).unwrap();
    for i in 0..3u64 {
        w.append_output(&chunk(i * 10, Stream::Pty, "0123456789")).unwrap();
    }
    File::create(dir.path().join(segment_name(30, "out"))).unwrap();
    match read_output(dir.path(), 5, usize::MAX).unwrap() {
        DiskRead::Chunks(c) => assert_eq!(c.iter().map(|c| c.data.len()).sum::<usize>(), 25),
        other => panic!("expected chunks, got {other:?}"),
    }
}

/// A listing made before the writer deleted its oldest segments: the
/// read lists again and answers from what is there.
#[test]
fn a_segment_deleted_after_the_listing_is_listed_again() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DiskLimits {
        segment_bytes: 10,
        max_bytes: 30,
    };
    let mut w = LogWriter::create(dir.path(), limits).unwrap();
    for i in 0..3u64 {
        w.append_output(&chunk(i * 10, Stream::Pty, "0123456789")).unwrap();
    }
    let stale = segments(dir.path()).unwrap();
    assert_eq!(stale[0], 0);
    for i in 3..20u64 {
        w.append_output(&chunk(i * 10, Stream::Pty, "0123456789")).unwrap();
    }
    let first = segments(dir.path()).unwrap()[0];
    match read_output_listed(dir.path(), stale.clone(), 0, 10).unwrap() {
        DiskRead::Gone { earliest } => assert_eq!(earliest, first),
        other => panic!("expected gone, got {other:?}"),
    }
    match read_output_listed(dir.path(), stale, first, 10).unwrap() {
        DiskRead::Chunks(c) => assert_eq!(c[0].offset, first),
        other => panic!("expected chunks, got {other:?}"),
    }
}

/// A log started in a directory that exists makes none: in a missing one
/// it fails and leaves nothing; in a spare's (its segment's empty files and
/// the room for a first record) it writes and reads back as one `create`
/// made.
#[test]
fn a_log_in_an_existing_directory_makes_no_directory() {
    let root = tempfile::tempdir().unwrap();
    let limits = DiskLimits {
        segment_bytes: 1 << 20,
        max_bytes: 1 << 20,
    };
    let missing = root.path().join("missing");
    let err = LogWriter::create_in_existing(&missing, limits).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(!missing.exists(), "a directory was made");

    let spare = root.path().join("spare");
    fs::create_dir(&spare).unwrap();
    for name in [segment_name(0, "out"), segment_name(0, "idx")] {
        File::create(spare.join(name)).unwrap();
    }
    make_first_record_room(&mut File::create(spare.join("meta.json")).unwrap()).unwrap();
    let mut w = LogWriter::create_in_existing(&spare, limits).unwrap();
    w.append_output(&chunk(0, Stream::Stdout, "hello")).unwrap();
    drop(w);
    match read_output(&spare, 0, 10).unwrap() {
        DiskRead::Chunks(c) => assert_eq!(c, vec![chunk(0, Stream::Stdout, "hello")]),
        other => panic!("expected chunks, got {other:?}"),
    }
}
