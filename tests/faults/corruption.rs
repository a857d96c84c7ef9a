//! A flipped byte in an OST's block file: the checksum catches it, the reader gets EIO (never
//! bad data), and the OSS logs the object and offset.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;

use sheen_tests::{parse_getstripe, pattern, run_ok};

#[test]
fn flipped_byte_is_eio_and_logged() {
    let (_tmp, mut cluster, mnt) = crate::mounted(1);
    let file = mnt.join("victim.bin");
    let data = pattern(99, 256 << 10);
    fs::write(&file, &data).unwrap();
    let out = run_ok(&cluster.bin("lfs"), &["getstripe", file.to_str().unwrap()]);
    let (_, _, objects) = parse_getstripe(&out);
    let (ost_idx, oid) = objects[0];

    // With the OSS stopped, find where byte 100,000 of the object lies and flip it.
    cluster.stop_oss().unwrap();
    let image = cluster.dir().join(format!("ost{ost_idx}.img"));
    let at = {
        let osd = sheen_osd::Osd::open(&image).unwrap();
        osd.debug_block_offset(oid, 100_000)
            .expect("block is mapped")
    };
    let img = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    let mut byte = [0u8; 1];
    img.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x40;
    img.write_all_at(&byte, at).unwrap();
    img.sync_all().unwrap();
    drop(img);
    cluster.start_oss().unwrap();

    // A fresh mount, so nothing comes from the page cache.
    cluster.unmount(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    let mut f = fs::File::open(&file).unwrap();
    let mut buf = Vec::new();
    let err = f.read_to_end(&mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        buf.len() < 100_000 || buf[..] == data[..buf.len()],
        "bad data was returned"
    );
    // Data before the damaged block still reads.
    let mut head = vec![0u8; 64 << 10];
    fs::File::open(&file)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert!(head[..] == data[..64 << 10]);

    let errors = cluster.log_errors();
    assert!(
        errors.iter().any(|l| l.contains("oss")
            && l.contains(&oid.to_string())
            && l.to_lowercase().contains("checksum")),
        "no OSS error naming object {oid}: {errors:#?}"
    );
}
