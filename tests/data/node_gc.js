let keep = [];
for (let r = 0; r < 40; r++) {
  let a = [];
  for (let i = 0; i < 200000; i++) a.push({x: i, s: "v" + i});
  keep.push(new ArrayBuffer(4 << 20));
  if (keep.length > 4) keep.shift();
}
