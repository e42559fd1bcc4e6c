import java.util.*;
import java.io.*;
import java.nio.charset.StandardCharsets;
public class PropRef {
  static String fixSurrogates(String s){ StringBuilder o=new StringBuilder(); for(int i=0;i<s.length();i++){ char c=s.charAt(i); if(Character.isHighSurrogate(c)&&i+1<s.length()&&Character.isLowSurrogate(s.charAt(i+1))){o.append(c).append(s.charAt(i+1)); i++;} else if(Character.isSurrogate(c)) o.append('\uFFFD'); else o.append(c);} return o.toString(); }
  static String hex(String s){ s = fixSurrogates(s); StringBuilder sb=new StringBuilder(); for (byte b : s.getBytes(StandardCharsets.UTF_8)) sb.append(String.format("%02x", b&0xff)); return sb.toString(); }
  static String unhex(String h){ byte[] b=new byte[h.length()/2]; for(int i=0;i<b.length;i++) b[i]=(byte)Integer.parseInt(h.substring(2*i,2*i+2),16); return new String(b, StandardCharsets.UTF_8); }
  public static void main(String[] a) throws Exception {
    BufferedReader r = new BufferedReader(new InputStreamReader(new FileInputStream(a[0]), StandardCharsets.UTF_8));
    String line; int skipped=0, n=0;
    while ((line = r.readLine()) != null) {
      String text = unhex(line.trim());
      Properties p = new Properties();
      String out;
      try {
        p.load(new StringReader(text));
        TreeMap<String,String> m = new TreeMap<>();
        boolean ambiguous = false;
        for (Map.Entry<Object,Object> e : p.entrySet()) {
          String k = e.getKey().toString().trim(), v = e.getValue().toString().trim();
          if (m.containsKey(k)) ambiguous = true;
          m.put(k, v);
        }
        if (ambiguous) { skipped++; continue; }
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<String,String> e : m.entrySet()) { if (sb.length()>0) sb.append(','); sb.append(hex(e.getKey())).append('=').append(hex(e.getValue())); }
        out = "ok " + sb;
      } catch (IllegalArgumentException ex) { out = "err"; }
      System.out.println(line.trim() + " " + out);
      n++;
    }
    System.err.println("cases " + n + " skipped " + skipped);
  }
}
