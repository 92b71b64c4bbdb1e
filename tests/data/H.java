public class H { public static void main(String[] a){ long s=0; for(int i=0;i<200000;i++){ s+=new int[16].length; } System.out.println(s);} }
